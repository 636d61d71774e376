//! Remote URLs as users type them (`https://acme.code.storage/team/x.git`), taken apart into what
//! git would send a helper for them: protocol, host (with its port) and path.
//!
//! `token URL` and `doctor URL` must resolve exactly as `get` does, so the path is %-decoded once,
//! as git decodes it before calling a helper. A URL may carry an SDK-minted token in its userinfo
//! (`https://t:<jwt>@...`); it is dropped here and never shown.

use std::fmt;

use crate::secret::Secret;

/// A remote URL reduced to the attributes git sends a credential helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    /// `https` or `http`, lower-cased.
    pub protocol: String,
    /// `host` or `host:port`, as written.
    pub host: String,
    /// The path without its leading slash, %-decoded (what git sends with `useHttpPath`).
    pub path: String,
    /// The password in the URL's userinfo, if any: an SDK-minted remote URL holds its token there.
    pub password: Option<Secret<String>>,
    /// Whether the URL has userinfo (`user@` or `user:password@`): with a user and no password,
    /// Code Storage answers 403 and git never asks a helper.
    pub has_userinfo: bool,
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/{}", self.protocol, self.host, self.path)
    }
}

/// Why a text is not a URL this helper can serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// No `scheme://`.
    #[error("{0:?} is not a URL; write it as https://ORG.code.storage/REPO.git")]
    NotAUrl(String),
    /// `git@host:path` or `ssh://`: git does not ask credential helpers for SSH.
    #[error(
        "{0:?} is an SSH remote; Code Storage tokens are for https remotes: https://ORG.code.storage/REPO.git"
    )]
    Ssh(String),
    /// Another scheme.
    #[error("{0:?} is not an https URL; tokens are only sent over https")]
    Scheme(String),
    /// An empty or odd host.
    #[error("{0:?} has no valid host; write it as https://ORG.code.storage/REPO.git")]
    Host(String),
    /// The path does not decode to UTF-8 text.
    #[error("{0:?} has a path that does not decode to text")]
    Path(String),
}

/// Parses `scheme://[user[:password]@]host[:port][/path][?query][#fragment]`.
pub fn parse(text: &str) -> Result<RemoteUrl, UrlError> {
    let text = text.trim();
    let shown = || redact(text);
    let Some((scheme, rest)) = text.split_once("://") else {
        if text.contains('@') && text.contains(':') {
            return Err(UrlError::Ssh(shown()));
        }
        return Err(UrlError::NotAUrl(shown()));
    };
    let protocol = scheme.to_ascii_lowercase();
    match protocol.as_str() {
        "https" | "http" => {}
        "ssh" | "git+ssh" | "ssh+git" => return Err(UrlError::Ssh(shown())),
        _ => return Err(UrlError::Scheme(shown())),
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, authority),
    };
    if crate::host::Host::parse(host).is_err() {
        return Err(UrlError::Host(shown()));
    }
    let path = after.split(['?', '#']).next().unwrap_or("");
    let path =
        percent_decode(path.trim_start_matches('/')).ok_or_else(|| UrlError::Path(shown()))?;
    let password = userinfo
        .and_then(|u| u.split_once(':'))
        .and_then(|(_, p)| percent_decode(p))
        .filter(|p| !p.is_empty())
        .map(Secret::new);
    Ok(RemoteUrl {
        protocol,
        host: host.to_owned(),
        path,
        password,
        has_userinfo: userinfo.is_some(),
    })
}

/// The URL with any userinfo replaced by `***`, safe to print.
pub fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.escape_debug().to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    let shown = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{after}"),
        None => text.to_owned(),
    };
    shown.escape_debug().to_string()
}

/// The part of a request path that names the repository, as any client sends it: the query is
/// dropped, and the path ends with the first segment ending in `.git` (git sends `team/x.git`;
/// glue code passing the request URL's path sends `team/x.git/info/refs` or
/// `team/x.git/info/lfs/objects/batch`). A path with no such segment is kept whole.
pub fn repository_path(path: &str) -> &str {
    let path = path.split_once('?').map_or(path, |(before, _)| before);
    let mut end = 0;
    for segment in path.split('/') {
        end += segment.len();
        if segment.ends_with(".git") {
            return &path[..end];
        }
        end += 1;
    }
    path
}

/// Decodes `%XX` escapes as git does for a credential's path; a `%` not followed by two hex
/// digits is kept as it is.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h)? * 16 + hex(l)?) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_port_and_decoded_path() {
        let url = parse("https://acme.code.storage/team/project-alpha.git").unwrap();
        assert_eq!(
            (url.protocol.as_str(), url.host.as_str(), url.path.as_str()),
            ("https", "acme.code.storage", "team/project-alpha.git")
        );
        let url = parse("HTTPS://git.acme.dev:8443/a%20b/c.git?x=1#frag").unwrap();
        assert_eq!(
            (url.protocol.as_str(), url.host.as_str(), url.path.as_str()),
            ("https", "git.acme.dev:8443", "a b/c.git")
        );
        assert_eq!(parse("https://acme.code.storage").unwrap().path, "");
        assert_eq!(parse("https://h/100%").unwrap().path, "100%");
    }

    #[test]
    fn the_repository_ends_at_the_first_git_segment_and_the_query_is_dropped() {
        for (sent, repository) in [
            ("team/base.git", "team/base.git"),
            ("team/base.git/info/refs", "team/base.git"),
            ("/team/base.git/info/lfs/objects/batch", "/team/base.git"),
            (
                "team/base.git/info/refs?service=git-upload-pack",
                "team/base.git",
            ),
            (
                "team/base+ephemeral.git/git-receive-pack",
                "team/base+ephemeral.git",
            ),
            ("a.git/b.git/info/refs", "a.git"),
            ("team/base", "team/base"),
            ("team/base?x=1", "team/base"),
            ("team/base.gitx/y", "team/base.gitx/y"),
            ("", ""),
        ] {
            assert_eq!(repository_path(sent), repository, "{sent}");
        }
    }

    proptest::proptest! {
        #[test]
        fn whatever_follows_the_git_segment_names_the_same_repository(
            segments in proptest::collection::vec("[a-z0-9][a-z0-9._+-]{0,8}", 1..4),
            suffix in proptest::sample::select(vec![
                "", "/", "/info/refs", "/git-upload-pack", "/git-receive-pack",
                "/info/lfs/objects/batch", "/info/lfs/locks/verify",
            ]),
            query in proptest::option::of("[a-z=&.-]{0,12}"),
        ) {
            let repository = format!("{}.git", segments.join("/"));
            proptest::prop_assume!(!repository[..repository.len() - 4].split('/').any(|s| s.ends_with(".git")));
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            let sent = format!("{repository}{suffix}{query}");
            proptest::prop_assert_eq!(repository_path(&sent), repository.as_str());
        }
    }

    #[test]
    fn keeps_a_token_in_userinfo_out_of_sight() {
        let url = parse("https://t:eyJhbGciOi.eyJpc3Mi.c2ln@acme.code.storage/x.git").unwrap();
        assert_eq!(url.host, "acme.code.storage");
        assert_eq!(
            url.password.as_ref().map(|p| p.expose().as_str()),
            Some("eyJhbGciOi.eyJpc3Mi.c2ln")
        );
        assert!(!format!("{url:?}").contains("eyJ"));
        assert!(url.has_userinfo);
        let user_only = parse("https://t@acme.code.storage/x.git").unwrap();
        assert!(user_only.has_userinfo && user_only.password.is_none());
        assert!(
            !parse("https://acme.code.storage/x.git")
                .unwrap()
                .has_userinfo
        );
        assert!(!url.to_string().contains("eyJ"));
        assert_eq!(
            redact("https://t:secret@acme.code.storage/x.git"),
            "https://***@acme.code.storage/x.git"
        );
        let err = parse("ftp://t:secret@acme.code.storage/x.git").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn refuses_what_git_would_not_send_a_helper() {
        assert!(matches!(
            parse("git@acme.code.storage:team/x.git"),
            Err(UrlError::Ssh(_))
        ));
        assert!(matches!(
            parse("ssh://git@acme.code.storage/x.git"),
            Err(UrlError::Ssh(_))
        ));
        assert!(matches!(parse("file:///tmp/x"), Err(UrlError::Scheme(_))));
        assert!(matches!(
            parse("acme.code.storage/x"),
            Err(UrlError::NotAUrl(_))
        ));
        for bad in [
            "https:///x.git",
            "https://a b/x",
            "https://:443/x",
            "https://a%2eb/x",
        ] {
            assert!(matches!(parse(bad), Err(UrlError::Host(_))), "{bad}");
        }
        assert!(matches!(parse("https://h/%ff"), Err(UrlError::Path(_))));
    }
}
