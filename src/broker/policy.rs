//! The broker's decision for one request from one sandbox (whose `[sandbox.NAME]` table
//! `config::sandbox` parses).
//!
//! A sandbox only ever narrows what the configuration grants: the organisation and repository
//! must be the sandbox's, the scopes are capped by its `scopes`, the lifetime by its `ttl`, its
//! ref policies are added, and `sub` names it. Least privilege comes from the asking process as
//! the kernel shows it, never from anything the client says.

use crate::config::Config;
pub use crate::config::sandbox::{Group, Sandbox};
use crate::env::Env;
use crate::glob::Glob;
use crate::host::OrgName;
use crate::log::Shown;
use crate::operation::Operation;
use crate::protocol::Request;
use crate::resolve::{self, Disposition, Overrides, Reach, ResolveError, Settings, Target, join};
use crate::token::{Op, Scope};

/// Why the broker gives a sandbox no token, and how git is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// How git is answered: nothing (not ours) or `quit=1`.
    pub disposition: Disposition,
    /// One line for the user and the audit log.
    pub reason: String,
    /// The organisation, when it was found.
    pub org: Option<String>,
    /// The repository, when it was found.
    pub repo: Option<String>,
}

/// What the broker grants: the token's settings before least privilege narrows them (as `get`
/// does, in [`crate::credential::answer`]), and what the asking command does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Everything the token says, within the sandbox's limits.
    pub settings: Settings,
    /// What the asking git command does, as its processes show it.
    pub operation: Operation,
}

/// Decides what `sandbox` gets for `request`: host → organisation → repository as `get` does,
/// then the sandbox's limits. `operation` is asked only when least privilege is on; it reads
/// the peer's processes, which the client cannot fake.
pub fn decide(
    config: &Config,
    sandbox: &Sandbox,
    request: &Request,
    env: &dyn Env,
    operation: impl FnOnce() -> Operation,
) -> Result<Grant, Denied> {
    let target = Target::Request {
        protocol: request.protocol.as_deref().unwrap_or_default(),
        host: request.host.as_deref().unwrap_or_default(),
        path: request.path.as_deref(),
    };
    let denied = |disposition, reason: String, org: Option<&str>, repo: Option<&str>| Denied {
        disposition,
        reason,
        org: org.map(str::to_owned),
        repo: repo.map(str::to_owned),
    };
    let mut settings = match resolve::resolve(
        Ok(Some(config)),
        target,
        Reach::Repository,
        env,
        &Overrides::default(),
    ) {
        Ok(settings) => settings,
        // A *.code.storage organisation the file does not configure: never one of the
        // sandbox's (those are all configured), so a refusal rather than a setup hint.
        Err(ResolveError::NoKey { org, .. } | ResolveError::UnknownOrg { org, .. }) => {
            return Err(denied(
                Disposition::Quit,
                org_refusal(sandbox, org.as_str()),
                Some(org.as_str()),
                None,
            ));
        }
        Err(e) => {
            let disposition = match e.disposition() {
                Disposition::DeclineWithHint => Disposition::Quit,
                other => other,
            };
            return Err(denied(disposition, e.to_string(), None, None));
        }
    };
    limit(sandbox, &mut settings)?;
    let operation = if settings.least_privilege {
        operation()
    } else {
        Operation::Unknown
    };
    if operation == Operation::Write && !settings.scopes.contains(&Scope::GitWrite) {
        // A read token would only meet the server's bare 403: say why here instead.
        let org = settings.org.to_string();
        return Err(denied(
            Disposition::Quit,
            push_refusal(sandbox, &settings),
            Some(&org),
            Some(&settings.repo),
        ));
    }
    Ok(Grant {
        settings,
        operation,
    })
}

/// Holds `settings` to `sandbox`'s limits: its organisations and repositories, its scopes (a
/// cap), its ttl (a cap), its subject, and its ref and repository policies added.
fn limit(sandbox: &Sandbox, settings: &mut Settings) -> Result<(), Denied> {
    let denied = |disposition, reason: String, org: &str, repo: &str| Denied {
        disposition,
        reason,
        org: Some(org.to_owned()),
        repo: Some(repo.to_owned()),
    };
    let org = settings.org.to_string();
    if !sandbox.orgs.iter().any(|o| o.matches(&org)) {
        return Err(denied(
            Disposition::Quit,
            org_refusal(sandbox, &org),
            &org,
            &settings.repo,
        ));
    }
    if !sandbox.repos.iter().any(|g| g.matches(&settings.repo)) {
        let patterns: Vec<&str> = sandbox.repos.iter().map(Glob::as_str).collect();
        return Err(denied(
            Disposition::Quit,
            format!(
                "sandbox {} may not get a token for repository {} of {org}: it matches none of the sandbox's repos ({}); add a pattern to [sandbox.{}] repos in the broker's config",
                sandbox.name,
                Shown(&settings.repo),
                patterns.join(", "),
                sandbox.name,
            ),
            &org,
            &settings.repo,
        ));
    }
    let capped = cap_scopes(&settings.scopes, &sandbox.scopes);
    if capped.is_empty() {
        return Err(denied(
            Disposition::Quit,
            format!(
                "sandbox {} may not get a token for repository {} of {org}: the config grants {} and the sandbox allows only {}",
                sandbox.name,
                Shown(&settings.repo),
                join(&settings.scopes),
                join(&sandbox.scopes),
            ),
            &org,
            &settings.repo,
        ));
    }
    settings.scopes = capped;
    if let Some(ttl) = sandbox.ttl {
        settings.ttl = settings.ttl.min(ttl);
    }
    settings.subject.clone_from(&sandbox.subject);
    settings.refs =
        crate::refpolicy::confine(settings.refs.take(), &sandbox.refs, &sandbox.push_branches);
    settings.ops = merge_ops(settings.ops.take(), &sandbox.ops);
    Ok(())
}

/// Why a push gets no token: the sandbox's scopes or the config's rule lack `git:write`.
fn push_refusal(sandbox: &Sandbox, settings: &Settings) -> String {
    let why = if sandbox.scopes.contains(&Scope::GitWrite) {
        "the broker's config grants it only read access there".to_owned()
    } else {
        format!(
            "its scopes are {}; add \"git:write\" to [sandbox.{}] scopes in the broker's config to let it push",
            join(&sandbox.scopes),
            sandbox.name
        )
    };
    format!(
        "sandbox {} may not push to repository {} of {}: {why}",
        sandbox.name,
        Shown(&settings.repo),
        settings.org
    )
}

fn org_refusal(sandbox: &Sandbox, org: &str) -> String {
    let allowed: Vec<&str> = sandbox.orgs.iter().map(OrgName::as_str).collect();
    format!(
        "sandbox {} may not get tokens for organisation {}; it may for {} (the sandbox's orgs in the broker's config)",
        sandbox.name,
        Shown(org),
        allowed.join(", ")
    )
}

/// The rule's scopes that the sandbox allows. `git:write` includes reading, so a sandbox that
/// allows only `git:read` still reads a repository whose rule grants `git:write` alone.
pub fn cap_scopes(granted: &[Scope], allowed: &[Scope]) -> Vec<Scope> {
    let mut capped = Vec::with_capacity(granted.len());
    for &scope in granted {
        let kept = if allowed.contains(&scope) {
            Some(scope)
        } else if scope == Scope::GitWrite && allowed.contains(&Scope::GitRead) {
            Some(Scope::GitRead)
        } else {
            None
        };
        if let Some(kept) = kept
            && !capped.contains(&kept)
        {
            capped.push(kept);
        }
    }
    capped
}

/// The rule's repository-wide ops with the sandbox's added.
pub fn merge_ops(rule: Option<Vec<Op>>, sandbox: &[Op]) -> Option<Vec<Op>> {
    if sandbox.is_empty() {
        return rule;
    }
    let mut ops = rule.unwrap_or_default();
    for op in sandbox {
        if !ops.contains(op) {
            ops.push(*op);
        }
    }
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::env::MapEnv;
    use crate::protocol;
    use crate::token::RefRule;
    use std::path::Path;

    use crate::config::sandbox::fixtures::{AGENT, BASE, parse};

    fn request(text: &str) -> Request {
        protocol::parse(text.as_bytes()).unwrap()
    }

    fn decide_for(config: &Config, text: &str, operation: Operation) -> Result<Grant, Denied> {
        decide(
            config,
            &config.sandboxes[0],
            &request(text),
            &MapEnv::default(),
            || operation,
        )
    }

    #[test]
    fn a_grant_carries_the_sandbox_subject_ttl_scopes_and_policies() {
        let config = parse(AGENT).unwrap();
        let grant = decide_for(
            &config,
            "protocol=https\nhost=acme.code.storage\npath=agents/42/x.git\n",
            Operation::Write,
        )
        .unwrap();
        let s = &grant.settings;
        assert_eq!((s.org.as_str(), s.repo.as_str()), ("acme", "agents/42/x"));
        assert_eq!(s.subject, "sandbox:agent-42");
        assert_eq!(
            s.ttl.seconds(),
            900,
            "the sandbox's 15m beats the default hour"
        );
        assert_eq!(s.scopes, [Scope::GitRead, Scope::GitWrite]);
        assert_eq!(
            s.refs,
            Some(vec![RefRule {
                pattern: "refs/heads/main".into(),
                ops: vec![Op::NoPush]
            }])
        );

        // The rule's two hours are capped; its write-only scope is kept, its policies added to.
        let mirror = decide_for(
            &config,
            "capability[]=authtype\nprotocol=https\nhost=127.0.0.1:9000\npath=mirrors/linux.git\n",
            Operation::Read,
        )
        .unwrap();
        let s = &mirror.settings;
        assert_eq!(s.ttl.seconds(), 900);
        assert_eq!(
            s.scopes,
            [Scope::GitWrite],
            "the rule's write-only scope is kept"
        );
        assert_eq!(
            mirror.operation,
            Operation::Read,
            "answer() narrows it to a read"
        );
        assert_eq!(s.ops, Some(vec![Op::VerifySig]));
        assert_eq!(
            s.refs,
            Some(vec![
                RefRule {
                    pattern: "refs/heads/main".into(),
                    ops: vec![Op::NoPush, Op::NoForcePush]
                },
                RefRule {
                    pattern: "refs/heads/*".into(),
                    ops: vec![Op::NoForcePush]
                },
            ])
        );
    }

    #[test]
    fn a_rule_with_a_shorter_ttl_than_the_sandbox_keeps_its_own() {
        let config = parse(&format!(
            "[[org.acme.repo]]\nmatch = \"agents/42/short\"\nttl = \"5m\"\n{AGENT}"
        ))
        .unwrap();
        let grant = decide_for(
            &config,
            "protocol=https\nhost=acme.code.storage\npath=agents/42/short.git\n",
            Operation::Read,
        )
        .unwrap();
        assert_eq!(
            grant.settings.ttl.seconds(),
            300,
            "5m is under the sandbox's 15m"
        );
    }

    #[test]
    fn refusals_name_the_sandbox_and_the_repository() {
        let config = parse(AGENT).unwrap();
        let outside = decide_for(
            &config,
            "protocol=https\nhost=acme.code.storage\npath=secret/x.git\n",
            Operation::Read,
        )
        .unwrap_err();
        assert_eq!(outside.disposition, Disposition::Quit);
        assert!(
            outside.reason.contains("sandbox agent-42")
                && outside.reason.contains("\"secret/x\"")
                && outside.reason.contains("agents/42/**, mirrors/*"),
            "{}",
            outside.reason
        );
        assert_eq!(outside.repo.as_deref(), Some("secret/x"));
        for other_org in [
            "protocol=https\nhost=beta.code.storage\npath=agents/42/x.git\n",
            "protocol=https\nhost=gamma.code.storage\npath=agents/42/x.git\n",
        ] {
            let denied = decide_for(&config, other_org, Operation::Read).unwrap_err();
            assert_eq!(denied.disposition, Disposition::Quit, "{other_org}");
            assert!(
                denied
                    .reason
                    .contains("may not get tokens for organisation"),
                "{}",
                denied.reason
            );
        }
        let foreign = decide_for(
            &config,
            "protocol=https\nhost=github.com\npath=a/b.git\n",
            Operation::Read,
        )
        .unwrap_err();
        assert_eq!(foreign.disposition, Disposition::Decline);
        let no_path = decide_for(
            &config,
            "protocol=https\nhost=acme.code.storage\n",
            Operation::Read,
        )
        .unwrap_err();
        assert_eq!(no_path.disposition, Disposition::Quit);
    }

    #[test]
    fn least_privilege_reads_the_peer_only_when_on() {
        let off = config::parse(
            &format!("least_privilege = false\n{BASE}{AGENT}"),
            Path::new("/c.toml"),
        )
        .unwrap();
        let grant = decide(
            &off,
            &off.sandboxes[0],
            &request("protocol=https\nhost=acme.code.storage\npath=agents/42/x.git\n"),
            &MapEnv::default(),
            || panic!("the peer is not read when least privilege is off"),
        )
        .unwrap();
        assert_eq!(grant.settings.scopes, [Scope::GitRead, Scope::GitWrite]);
        assert_eq!(grant.operation, Operation::Unknown);
    }

    #[test]
    fn scopes_are_capped_and_write_implies_read() {
        use Scope::*;
        assert_eq!(cap_scopes(&[GitRead, GitWrite], &[GitRead]), [GitRead]);
        assert_eq!(cap_scopes(&[GitWrite], &[GitRead]), [GitRead]);
        assert_eq!(
            cap_scopes(&[GitWrite, RepoWrite], &[GitRead, GitWrite]),
            [GitWrite]
        );
        assert_eq!(cap_scopes(&[OrgRead], &[GitRead, GitWrite]), []);
        let read_only = parse(
            "[sandbox.r]\nsocket = \"/s\"\norgs = [\"acme\"]\nrepos = [\"**\"]\nscopes = [\"org:read\"]\n",
        )
        .unwrap();
        let denied = decide_for(
            &read_only,
            "protocol=https\nhost=acme.code.storage\npath=x.git\n",
            Operation::Write,
        )
        .unwrap_err();
        assert!(
            denied.reason.contains("grants git:read+git:write"),
            "{}",
            denied.reason
        );
    }

    #[test]
    fn a_push_from_a_sandbox_that_may_only_read_is_refused_with_the_reason() {
        let read_only = parse(
            "[sandbox.r]\nsocket = \"/s\"\norgs = [\"acme\"]\nrepos = [\"**\"]\nscopes = [\"git:read\"]\n",
        )
        .unwrap();
        let request = "protocol=https\nhost=acme.code.storage\npath=x.git\n";
        let denied = decide_for(&read_only, request, Operation::Write).unwrap_err();
        assert_eq!(denied.disposition, Disposition::Quit);
        assert!(
            denied
                .reason
                .contains("sandbox r may not push to repository \"x\" of acme")
                && denied
                    .reason
                    .contains("add \"git:write\" to [sandbox.r] scopes"),
            "{}",
            denied.reason
        );
        // A fetch, or a command least privilege cannot tell, still reads.
        for operation in [Operation::Read, Operation::Unknown] {
            let grant = decide_for(&read_only, request, operation).unwrap();
            assert_eq!(grant.settings.scopes, [Scope::GitRead]);
        }
    }

    #[test]
    fn push_branches_confine_every_token_and_keep_the_rule_s_ops() {
        let config = parse(
            "[sandbox.b]\nsocket = \"/s\"\norgs = [\"acme\"]\nrepos = [\"**\"]\npush_branches = [\"agents/42/*\", \"fix-123\"]\n",
        )
        .unwrap();
        let grant = decide_for(
            &config,
            "protocol=https\nhost=acme.code.storage\npath=mirrors/x.git\n",
            Operation::Write,
        )
        .unwrap();
        let refs: Vec<(String, Vec<Op>)> = grant
            .settings
            .refs
            .unwrap()
            .into_iter()
            .map(Into::into)
            .collect();
        assert_eq!(
            refs,
            [
                ("refs/heads/fix-123".into(), vec![Op::NoForcePush]),
                ("refs/heads/agents/42/*".into(), vec![Op::NoForcePush]),
                ("refs/heads/*".into(), vec![Op::NoPush, Op::NoForcePush]),
                ("*".into(), vec![Op::NoPush]),
            ]
        );
        let bad = parse(
            "[sandbox.b]\nsocket = \"/s\"\norgs = [\"acme\"]\nrepos = [\"**\"]\npush_branches = [\"release-*\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("[sandbox.b] push_branches entry \"release-*\""),
            "{bad}"
        );
    }

    #[test]
    fn sandbox_ops_are_added_once() {
        assert_eq!(
            merge_ops(Some(vec![Op::NoPush]), &[Op::NoPush]),
            Some(vec![Op::NoPush])
        );
    }
}
