//! Host names and organisation names: one parser and one set of rules for the config, `setup`,
//! the resolver and `doctor`, so that what one accepts the others serve.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// The suffix of Code Storage's own git hosts.
pub const CODE_STORAGE_SUFFIX: &str = ".code.storage";

/// A host as git names it in a credential request: a DNS name or an IP address, with an optional
/// port. Lower-cased; the default https port is dropped, so `git.acme.dev:443` is `git.acme.dev`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Host {
    name: String,
    port: Option<u16>,
}

/// Why a text is not a host name with an optional port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is not a host name with an optional port (such as \"git.acme.dev:8443\")",
    crate::log::Shown(.0)
)]
pub struct HostError(pub String);

impl Host {
    /// Parses `name`, `name:port`, an IPv4 address or `[v6]:port`.
    pub fn parse(text: &str) -> Result<Self, HostError> {
        let bad = || HostError(text.to_owned());
        let (name, port) = if let Some(rest) = text.strip_prefix('[') {
            let (address, after) = rest.split_once(']').ok_or_else(bad)?;
            address.parse::<Ipv6Addr>().map_err(|_| bad())?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
            };
            (format!("[{}]", address.to_ascii_lowercase()), port)
        } else {
            let (name, port) = match text.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (text, None),
            };
            if !valid_dns_name(name) {
                return Err(bad());
            }
            (name.to_ascii_lowercase(), port)
        };
        let port = match port {
            None => None,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                match digits.parse::<u16>() {
                    Ok(0) | Err(_) => return Err(bad()),
                    Ok(443) => None,
                    Ok(port) => Some(port),
                }
            }
            Some(_) => return Err(bad()),
        };
        Ok(Self { name, port })
    }

    /// The name without the port (an IPv6 address keeps its brackets).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port, unless it is the default (443).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The organisation of a Code Storage host, `<org>.code.storage` with any port.
    pub fn code_storage_org(&self) -> Option<OrgName> {
        let label = self.name.strip_suffix(CODE_STORAGE_SUFFIX)?;
        OrgName::parse(label).ok()
    }

    /// Whether the host is this machine: 127.0.0.0/8, ::1 or localhost.
    pub fn is_loopback(&self) -> bool {
        self.name == "localhost"
            || self
                .name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl FromStr for Host {
    type Err = HostError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// A DNS name (or dotted IPv4 address): labels of letters, digits, `-` and `_`, none empty, none
/// starting or ending with `-`; at most 253 characters.
fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// An organisation's name: the `iss` claim, and the first label of its `<name>.code.storage` host,
/// so one DNS label (letters, digits and inner `-`, at most 63). Compared without regard to case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgName(String);

/// Why a text is not an organisation name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is not an organisation name: use the name in your ORG.code.storage host, letters, digits and '-' (e.g. acme)",
    crate::log::Shown(.0)
)]
pub struct OrgNameError(pub String);

impl OrgName {
    /// Checks `text` against the rules.
    pub fn parse(text: &str) -> Result<Self, OrgNameError> {
        let valid = !text.is_empty()
            && text.len() <= 63
            && !text.starts_with('-')
            && !text.ends_with('-')
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(OrgNameError(text.to_owned()))
        }
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` names the same organisation (case does not matter in host names).
    pub fn matches(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }

    /// The organisation's own Code Storage host.
    pub fn default_host(&self) -> Host {
        Host {
            name: format!("{}{CODE_STORAGE_SUFFIX}", self.0.to_ascii_lowercase()),
            port: None,
        }
    }
}

impl fmt::Display for OrgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for OrgName {
    type Err = OrgNameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_lower_cased_and_lose_the_default_port() {
        for (text, shown) in [
            ("GIT.acme.dev:8443", "git.acme.dev:8443"),
            ("git.acme.dev:443", "git.acme.dev"),
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            ("[::1]:8080", "[::1]:8080"),
            ("[::1]", "[::1]"),
            ("Acme.Code.Storage", "acme.code.storage"),
        ] {
            assert_eq!(Host::parse(text).unwrap().to_string(), shown, "{text}");
        }
        assert_eq!(Host::parse("git.acme.dev:443"), Host::parse("git.acme.dev"));
    }

    #[test]
    fn anything_that_is_not_a_host_name_is_refused() {
        for bad in [
            "",
            "[acme.code.storage]evil.com",
            "acme.code.storage]evil.com",
            "user@acme.code.storage",
            "a b.code.storage",
            "acme.code.storage:",
            "acme.code.storage:x",
            "acme.code.storage:0",
            "acme.code.storage:70000",
            "acme..code.storage",
            "-acme.code.storage",
            "acme.code.storage/x",
            "caf\u{e9}.code.storage",
            "[not-v6]:1",
            "a\tb",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn code_storage_hosts_name_one_organisation() {
        let org = |h: &str| Host::parse(h).unwrap().code_storage_org();
        assert_eq!(org("Acme.code.storage:8443").unwrap().as_str(), "acme");
        assert_eq!(org("api.acme.code.storage"), None);
        assert_eq!(org("code.storage"), None);
        assert_eq!(org("acme_x.code.storage"), None);
        assert_eq!(org("github.com"), None);
    }

    #[test]
    fn loopback_hosts() {
        for host in ["localhost:80", "[::1]:8080", "127.9.9.9"] {
            assert!(Host::parse(host).unwrap().is_loopback(), "{host}");
        }
        for host in ["10.0.0.1", "localhost.evil.com"] {
            assert!(!Host::parse(host).unwrap().is_loopback(), "{host}");
        }
    }

    #[test]
    fn organisation_names_are_dns_labels() {
        for good in ["acme", "a", "acme-2", "ACME"] {
            assert!(OrgName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a+b", "a.b", "a_b", "-a", "a-", "a b", "\u{1b}[31m"] {
            let err = OrgName::parse(bad).unwrap_err().to_string();
            assert!(!err.contains('\u{1b}'), "{err}");
        }
        assert!(OrgName::parse("acme").unwrap().matches("ACME"));
        assert_eq!(
            OrgName::parse("Acme").unwrap().default_host().to_string(),
            "acme.code.storage"
        );
    }
}
