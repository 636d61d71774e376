//! What a sandbox may get, as the broker tells the sandbox itself: the answer to a `describe`
//! request (one JSON object), read by `doctor`, by `token` and by the client before it forwards
//! `store` or `erase`. It holds the sandbox's own policy and nothing else of the broker's
//! config: no key source, no other sandbox.

use serde::{Deserialize, Serialize};

use crate::config::{Config, Sandbox};
use crate::host::Host;
use crate::token::{Op, RefRule, Scope};

/// The action word of the request.
pub const DESCRIBE: &str = "describe";

/// One sandbox's policy, as the broker applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// The sandbox's name.
    pub sandbox: String,
    /// The hosts it may get tokens for (its organisations' hosts).
    pub hosts: Vec<String>,
    /// The organisations it may get tokens for.
    pub orgs: Vec<String>,
    /// The repository patterns it may get tokens for.
    pub repos: Vec<String>,
    /// The most scopes a token may carry.
    pub scopes: Vec<Scope>,
    /// The longest lifetime of a token, when the sandbox caps it.
    pub ttl: Option<String>,
    /// The `sub` claim of its tokens.
    pub subject: String,
    /// Ref policies added to every token.
    pub refs: Vec<RefRule>,
    /// Repository-wide ops added to every token.
    pub ops: Vec<Op>,
    /// The only refs its tokens may push to (empty: any the other policies allow).
    pub push_branches: Vec<String>,
    /// Whether fetches get read-only tokens (the broker reads the asking process).
    pub least_privilege: bool,
}

impl Description {
    /// What `sandbox` may get under `config`: its own fields and its organisations' hosts.
    pub fn of(sandbox: &Sandbox, config: &Config) -> Self {
        let orgs: Vec<&crate::config::Org> = sandbox
            .orgs
            .iter()
            .filter_map(|name| config.orgs.values().find(|o| o.name == *name))
            .collect();
        Self {
            sandbox: sandbox.name.clone(),
            hosts: orgs
                .iter()
                .flat_map(|o| &o.hosts)
                .map(ToString::to_string)
                .collect(),
            orgs: sandbox.orgs.iter().map(|o| o.as_str().to_owned()).collect(),
            repos: sandbox
                .repos
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
            scopes: sandbox.scopes.clone(),
            ttl: sandbox.ttl.map(|t| t.to_string()),
            subject: sandbox.subject.clone(),
            refs: sandbox.refs.clone(),
            ops: sandbox.ops.clone(),
            push_branches: sandbox.push_branches.iter().map(|p| p.to_claim()).collect(),
            // As resolve reads it: an organisation's setting, else the file's, else on.
            least_privilege: orgs.iter().any(|o| {
                o.level
                    .least_privilege
                    .or(config.level.least_privilege)
                    .unwrap_or(true)
            }),
        }
    }

    /// Whether `host` (as git sends it) is one the sandbox may get tokens for.
    pub fn serves(&self, host: &str) -> bool {
        let Ok(host) = Host::parse(host) else {
            return false;
        };
        self.hosts
            .iter()
            .filter_map(|h| Host::parse(h).ok())
            .any(|h| h == host)
    }

    /// One line saying what the sandbox may get, for `doctor`.
    pub fn summary(&self) -> String {
        let scopes: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        let mut line = format!(
            "sandbox {} may get tokens for {} on {}, repos {}, scopes at most {}, ttl {}, sub {}",
            self.sandbox,
            self.orgs.join(", "),
            self.hosts.join(", "),
            self.repos.join(", "),
            scopes.join("+"),
            self.ttl.as_deref().unwrap_or("as the broker's rules"),
            crate::log::Escaped(&self.subject),
        );
        if !self.push_branches.is_empty() {
            line.push_str(&format!(
                "; pushes only to {}",
                self.push_branches.join(", ")
            ));
        }
        if !self.refs.is_empty() {
            let refs = serde_json::to_string(&self.refs).unwrap_or_default();
            line.push_str(&format!("; refs {refs}"));
        }
        if !self.least_privilege {
            line.push_str("; least privilege off (fetches get write tokens too)");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description() -> Description {
        Description {
            sandbox: "agent-42".into(),
            hosts: vec!["acme.code.storage".into(), "127.0.0.1:9000".into()],
            orgs: vec!["acme".into()],
            repos: vec!["agents/42/**".into()],
            scopes: vec![Scope::GitRead],
            ttl: Some("15m".into()),
            subject: "sandbox:agent-42".into(),
            refs: Vec::new(),
            ops: Vec::new(),
            push_branches: vec!["agents/42/*".into()],
            least_privilege: true,
        }
    }

    #[test]
    fn serves_only_its_hosts_whatever_their_case() {
        let d = description();
        assert!(d.serves("ACME.code.storage") && d.serves("127.0.0.1:9000"));
        assert!(!d.serves("github.com") && !d.serves("127.0.0.1:9001") && !d.serves(""));
    }

    #[test]
    fn round_trips_and_summarises_in_one_line() {
        let d = description();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Description>(&json).unwrap(), d);
        let line = d.summary();
        assert!(
            line.contains("sandbox agent-42 may get tokens for acme")
                && line.contains("scopes at most git:read")
                && line.contains("pushes only to agents/42/*"),
            "{line}"
        );
    }
}
