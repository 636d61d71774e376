//! Which organisation owns the host a request was sent to, as Code Storage routes hosts:
//! `ORG.code.storage` is organisation ORG's git host and `api.ORG.code.storage` its REST API's
//! (never an organisation called `api`). Loopback names (`127.0.0.1`, `localhost`) name no
//! organisation: `--host NAME=ORG` says whose they are, and with a single `--org` they are its.

/// What a request's `Host` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The git host of this organisation.
    Org(String),
    /// A REST API host (`api.ORG.code.storage`), which the emulator does not serve.
    RestApi(String),
    /// A host no organisation owns here.
    Unknown(String),
}

/// Host names mapped to organisations, from `--host` and `--org`.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    /// `--host NAME=ORG`, names lower-cased and without a port.
    pub explicit: Vec<(String, String)>,
    /// The organisation that owns every host no rule names, when only one was registered.
    pub only_org: Option<String>,
}

impl Hosts {
    /// The owner of `host` (a `Host` header value, perhaps with a port).
    pub fn owner(&self, host: &str) -> Owner {
        let name = without_port(host).to_ascii_lowercase();
        if let Some((_, org)) = self.explicit.iter().find(|(n, _)| *n == name) {
            return Owner::Org(org.clone());
        }
        if let Some(label) = name.strip_suffix(".code.storage") {
            return match label.split_once('.') {
                Some(("api", org)) if !org.contains('.') => Owner::RestApi(name.clone()),
                None if label == "api" => Owner::RestApi(name.clone()),
                None if !label.is_empty() => Owner::Org(label.to_owned()),
                _ => Owner::Unknown(name.clone()),
            };
        }
        match &self.only_org {
            Some(org) => Owner::Org(org.clone()),
            None => Owner::Unknown(name),
        }
    }
}

/// `host` without a `:port` (an IPv6 literal keeps its brackets).
fn without_port(host: &str) -> &str {
    let host = host.trim();
    match host.rsplit_once(':') {
        Some((name, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!name.contains(':') || name.ends_with(']')) =>
        {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_storage_hosts_name_their_organisation_and_api_is_the_rest_host() {
        let hosts = Hosts::default();
        let org = |name: &str| Owner::Org(name.to_owned());
        assert_eq!(hosts.owner("acme.code.storage"), org("acme"));
        assert_eq!(hosts.owner("ACME.Code.Storage:443"), org("acme"));
        assert_eq!(
            hosts.owner("api.acme.code.storage"),
            Owner::RestApi("api.acme.code.storage".into())
        );
        assert_eq!(
            hosts.owner("api.code.storage"),
            Owner::RestApi("api.code.storage".into())
        );
        assert_eq!(
            hosts.owner("a.b.acme.code.storage"),
            Owner::Unknown("a.b.acme.code.storage".into())
        );
        assert_eq!(
            hosts.owner("127.0.0.1:8443"),
            Owner::Unknown("127.0.0.1".into())
        );
    }

    #[test]
    fn explicit_names_win_and_a_single_org_owns_the_rest() {
        let hosts = Hosts {
            explicit: vec![("localhost".into(), "beta".into())],
            only_org: Some("acme".into()),
        };
        assert_eq!(hosts.owner("localhost:1234"), Owner::Org("beta".into()));
        assert_eq!(hosts.owner("127.0.0.1:1234"), Owner::Org("acme".into()));
        assert_eq!(hosts.owner("[::1]:1234"), Owner::Org("acme".into()));
        assert_eq!(without_port("[::1]:1234"), "[::1]");
        assert_eq!(without_port("[::1]"), "[::1]");
        // A code.storage name is its organisation's even when another org is the only one.
        assert_eq!(
            hosts.owner("gamma.code.storage"),
            Owner::Org("gamma".into())
        );
    }
}
