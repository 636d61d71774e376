//! Ref policies carried by a token (`refs`, `ops`), enforced on push through git's
//! `proc-receive` hook, which can reject a single ref with a reason of our own: git then prints
//! `! [remote rejected] main -> main (no-force-push)`. Objects are already out of quarantine
//! when the hook runs, so it can check ancestry and must update the refs it accepts itself.

use std::io::{self, BufRead, Read, Write};
use std::process::{Command, ExitCode, Stdio};

use serde::{Deserialize, Serialize};

use crate::auth::Claims;

/// The environment variable that carries a push's policy from the server to its hook.
pub const POLICY_ENV: &str = "CODESTORAGE_EMULATOR_POLICY";

/// The argument that runs the emulator binary as the `proc-receive` hook.
pub const HOOK_ARG: &str = "--proc-receive-hook";

/// The null object ID of SHA-1 repositories (the tests' shorthand; see [`is_null`]).
#[cfg(test)]
const ZERO: &str = "0000000000000000000000000000000000000000";

/// Whether `oid` is the null object ID (ref created or deleted), of SHA-1 or SHA-256 length.
fn is_null(oid: &str) -> bool {
    !oid.is_empty() && oid.bytes().all(|b| b == b'0')
}

/// What a token says about pushes to refs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// `[pattern, [ops]]`, first match wins.
    pub refs: Vec<(String, Vec<String>)>,
    /// Ops for every ref.
    pub ops: Vec<String>,
}

impl Policy {
    /// The token's policy, or `None` when it sets none.
    pub fn from_claims(claims: &Claims) -> Option<Self> {
        let policy = Self {
            refs: claims.refs.clone().unwrap_or_default(),
            ops: claims.ops.clone().unwrap_or_default(),
        };
        (!policy.refs.is_empty() || !policy.ops.is_empty()).then_some(policy)
    }

    /// The ops that apply to `refname`: the first matching `refs` entry's (none when no entry
    /// matches, or the first one has no ops), and the legacy repo-wide ones.
    pub fn ops_for(&self, refname: &str) -> Vec<&str> {
        let matching = self
            .refs
            .iter()
            .find(|(pattern, _)| covers(pattern, refname));
        matching
            .into_iter()
            .flat_map(|(_, ops)| ops)
            .chain(&self.ops)
            .map(String::as_str)
            .collect()
    }

    /// Checks one ref update; `Err` carries the op that refuses it.
    pub fn check(
        &self,
        old: &str,
        new: &str,
        refname: &str,
        is_ancestor: impl Fn(&str, &str) -> bool,
    ) -> Result<(), &'static str> {
        let ops = self.ops_for(refname);
        if ops.contains(&"no-push") {
            return Err("no-push");
        }
        if ops.contains(&"no-force-push") {
            let deletion = is_null(new);
            let rewrite = !is_null(old) && !deletion && !is_ancestor(old, new);
            if deletion || rewrite {
                return Err("no-force-push");
            }
        }
        Ok(())
    }
}

/// Whether a `refs` entry's `pattern` covers `refname`, as Code Storage reads a pattern: `*`
/// is every ref, one ending in `/*` every ref under that prefix (at any depth), anything else
/// exactly one ref; a pattern not starting with `refs/` is a short name under `refs/heads/`. A
/// `*` anywhere else is a literal character, so such a pattern covers no ref git can name.
/// Written apart from the helper's own pattern code on purpose, so that the emulator does not
/// check the helper's tokens with the helper's reading of them.
pub fn covers(pattern: &str, refname: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let full = if pattern.starts_with("refs/") {
        pattern.to_owned()
    } else {
        format!("refs/heads/{pattern}")
    };
    match full.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('/') => {
            refname.len() > prefix.len() && refname.starts_with(prefix)
        }
        _ => refname == full,
    }
}

fn read_pkt(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut length = [0u8; 4];
    input.read_exact(&mut length)?;
    let length = std::str::from_utf8(&length)
        .ok()
        .and_then(|l| usize::from_str_radix(l, 16).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad pkt-line length"))?;
    if length == 0 {
        return Ok(None);
    }
    let mut payload = vec![0; length.saturating_sub(4)];
    input.read_exact(&mut payload)?;
    Ok(Some(payload))
}

fn write_pkt(out: &mut impl Write, payload: &str) -> io::Result<()> {
    write!(out, "{:04x}{payload}", payload.len() + 4)
}

fn git(args: &[&str]) -> bool {
    Command::new("git")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs as git's `proc-receive` hook: reads the pushed commands, applies the policy from
/// [`POLICY_ENV`], updates accepted refs and reports each one back to receive-pack.
pub fn run_hook() -> ExitCode {
    let policy: Policy = std::env::var(POLICY_ENV)
        .ok()
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default();
    match hook(&policy, &mut io::stdin().lock(), &mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codestorage-emulator proc-receive hook: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether receive-pack's version line (`version=1\0FEATURES`) asks for an atomic push.
fn wants_atomic(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    text.split_once('\0')
        .is_some_and(|(_, features)| features.split_whitespace().any(|f| f == "atomic"))
}

/// The reason an atomic push refuses the refs its policy allowed, when another was refused.
const ATOMIC_REFUSED: &str =
    "atomic push failed: another ref was refused by the token's ref policy";

fn hook(policy: &Policy, input: &mut impl BufRead, out: &mut impl Write) -> io::Result<()> {
    // Version negotiation: take what receive-pack offers, ask for no extras; `atomic` among its
    // features means one refused ref must leave every ref as it was.
    let mut atomic = false;
    while let Some(line) = read_pkt(input)? {
        atomic |= wants_atomic(&line);
    }
    write_pkt(out, "version=1\0")?;
    out.write_all(b"0000")?;
    out.flush()?;
    let mut commands = Vec::new();
    while let Some(line) = read_pkt(input)? {
        let line = String::from_utf8_lossy(&line).trim_end().to_owned();
        let mut fields = line.splitn(3, ' ');
        if let (Some(old), Some(new), Some(refname)) = (fields.next(), fields.next(), fields.next())
        {
            commands.push((old.to_owned(), new.to_owned(), refname.to_owned()));
        }
    }
    // Every ref is judged before any is updated, so that an atomic push can still land none.
    let verdicts: Vec<_> = commands
        .iter()
        .map(|(old, new, refname)| {
            policy.check(old, new, refname, |a, b| {
                git(&["merge-base", "--is-ancestor", a, b])
            })
        })
        .collect();
    let any_refused = verdicts.iter().any(Result::is_err);
    for ((old, new, refname), verdict) in commands.iter().zip(verdicts) {
        let report = match verdict {
            Err(op) => {
                eprintln!("{refname}: refused by the token's ref policy ({op})");
                format!("ng {refname} {op}")
            }
            Ok(()) if atomic && any_refused => format!("ng {refname} {ATOMIC_REFUSED}"),
            Ok(()) => update(policy, old, new, refname),
        };
        write_pkt(out, &report)?;
    }
    out.write_all(b"0000")?;
    out.flush()
}

/// Updates one ref the policy allowed; the report line for receive-pack.
fn update(policy: &Policy, old: &str, new: &str, refname: &str) -> String {
    if policy.ops_for(refname).contains(&"verify-sig") {
        // Code Storage checks commit signatures against registered signing keys; the
        // emulator has no such keys, so it says so and lets the update through.
        eprintln!("{refname}: verify-sig is not checked by the emulator; allowed");
    }
    let updated = if is_null(new) {
        git(&["update-ref", "-d", refname, old])
    } else if is_null(old) {
        git(&["update-ref", refname, new, ""])
    } else {
        git(&["update-ref", refname, new, old])
    };
    if updated {
        format!("ok {refname}")
    } else {
        format!("ng {refname} update-ref failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn policy(refs: &[(&str, &[&str])], ops: &[&str]) -> Policy {
        Policy {
            refs: refs
                .iter()
                .map(|(p, o)| (p.to_string(), o.iter().map(|s| s.to_string()).collect()))
                .collect(),
            ops: ops.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn first_matching_ref_rule_wins_and_repo_wide_ops_always_apply() {
        let p = policy(
            &[("refs/heads/main", &["no-push"]), ("refs/heads/*", &[])],
            &["no-force-push"],
        );
        assert_eq!(p.ops_for("refs/heads/main"), ["no-push", "no-force-push"]);
        assert_eq!(p.ops_for("refs/heads/feature/x"), ["no-force-push"]);
        assert_eq!(p.ops_for("refs/tags/v1"), ["no-force-push"]);
    }

    #[test]
    fn no_push_refuses_any_update_and_no_force_push_only_rewrites_and_deletes() {
        let p = policy(&[("refs/heads/main", &["no-push"])], &[]);
        assert_eq!(
            p.check(A, B, "refs/heads/main", |_, _| true),
            Err("no-push")
        );
        assert_eq!(p.check(A, B, "refs/heads/dev", |_, _| false), Ok(()));
        let p = policy(&[], &["no-force-push"]);
        assert_eq!(p.check(A, B, "refs/heads/main", |_, _| true), Ok(()));
        assert_eq!(
            p.check(A, B, "refs/heads/main", |_, _| false),
            Err("no-force-push")
        );
        assert_eq!(p.check(ZERO, B, "refs/heads/new", |_, _| false), Ok(()));
        assert_eq!(
            p.check(A, ZERO, "refs/heads/main", |_, _| true),
            Err("no-force-push")
        );
    }

    #[test]
    fn null_ids_of_either_hash_mean_create_or_delete() {
        let sha256_null = "0".repeat(64);
        assert!(is_null(ZERO) && is_null(&sha256_null));
        assert!(!is_null(A) && !is_null(""));
        let p = policy(&[("refs/heads/*", &["no-force-push"])], &[]);
        assert_eq!(
            p.check(&"a".repeat(64), &sha256_null, "refs/heads/main", |_, _| {
                true
            }),
            Err("no-force-push")
        );
        // A prefix covers every depth under it; refs/tags/x is not under it.
        assert_eq!(
            p.check(A, ZERO, "refs/heads/team/x", |_, _| true),
            Err("no-force-push")
        );
        assert_eq!(p.check(A, ZERO, "refs/tags/x", |_, _| true), Ok(()));
    }

    #[test]
    fn a_pattern_is_an_exact_ref_a_prefix_ending_in_slash_star_or_star() {
        // Exact: that ref and no other.
        assert!(covers("refs/heads/main", "refs/heads/main"));
        assert!(!covers("refs/heads/main", "refs/heads/main2"));
        assert!(!covers("refs/heads/main", "refs/heads/main/x"));
        assert!(!covers("refs/tags/v1", "refs/heads/v1"));
        // A prefix ending in `/*`: every ref under it, at any depth, not the prefix itself.
        assert!(covers("refs/heads/agents/42/*", "refs/heads/agents/42/a"));
        assert!(covers("refs/heads/agents/42/*", "refs/heads/agents/42/a/b"));
        assert!(!covers("refs/heads/agents/42/*", "refs/heads/agents/42"));
        assert!(!covers("refs/heads/agents/42/*", "refs/heads/agents/421/a"));
        assert!(!covers("refs/heads/agents/42/*", "refs/tags/agents/42/a"));
        assert!(covers("refs/*", "refs/notes/commits"));
        // `*`: every ref.
        for refname in ["refs/heads/main", "refs/tags/v1", "refs/x"] {
            assert!(covers("*", refname), "{refname}");
        }
        // A short name is a branch: refs/heads/NAME, exact or as a prefix.
        assert!(covers("main", "refs/heads/main"));
        assert!(!covers("main", "refs/tags/main"));
        assert!(!covers("main", "main"));
        assert!(covers("fix-123", "refs/heads/fix-123"));
        assert!(covers("agents/42/*", "refs/heads/agents/42/x/y"));
        assert!(!covers("agents/42/*", "refs/heads/agents/7/x"));
        // Anything else is literal: no segment globs, no `**`, no trailing star without `/`.
        assert!(!covers("refs/heads/release-*", "refs/heads/release-1"));
        assert!(!covers("refs/heads/**", "refs/heads/a"));
        assert!(!covers("refs/*/main", "refs/heads/main"));
        assert!(!covers("", "refs/heads/main"));
    }

    #[test]
    fn first_match_wins_an_entry_without_ops_allows_and_no_match_allows() {
        let confined = policy(
            &[
                ("agents/42/*", &[]),
                ("refs/heads/fix-123", &["no-force-push"]),
                ("*", &["no-push"]),
                ("agents/42/locked", &["no-push"]),
            ],
            &[],
        );
        // The allow entry comes first: the later entry for agents/42/locked never applies.
        assert_eq!(
            confined.check(A, B, "refs/heads/agents/42/locked", |_, _| false),
            Ok(())
        );
        assert_eq!(
            confined.check(A, B, "refs/heads/fix-123", |_, _| false),
            Err("no-force-push")
        );
        assert_eq!(
            confined.check(A, B, "refs/heads/fix-123", |_, _| true),
            Ok(())
        );
        for refname in ["refs/heads/main", "refs/tags/v1", "refs/heads/agents/7/x"] {
            assert_eq!(
                confined.check(ZERO, B, refname, |_, _| true),
                Err("no-push"),
                "{refname}"
            );
        }
        // Without a final `*` entry, a ref no entry matches is allowed.
        let open = policy(&[("main", &["no-push"])], &[]);
        assert_eq!(open.check(A, B, "refs/heads/dev", |_, _| false), Ok(()));
        assert_eq!(
            open.check(A, B, "refs/heads/main", |_, _| true),
            Err("no-push")
        );
    }

    #[test]
    fn hook_speaks_proc_receive_and_reports_each_ref() {
        let p = policy(&[("refs/heads/main", &["no-push"])], &[]);
        let mut input = Vec::new();
        write_pkt(&mut input, "version=1\0atomic").unwrap();
        input.extend_from_slice(b"0000");
        write_pkt(&mut input, &format!("{A} {B} refs/heads/main")).unwrap();
        input.extend_from_slice(b"0000");
        let mut out = Vec::new();
        hook(&p, &mut &input[..], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("000eversion=1\0"), "{text:?}");
        assert!(text.contains("ng refs/heads/main no-push"), "{text:?}");
        assert!(text.ends_with("0000"));
    }

    #[test]
    fn an_atomic_push_with_one_refused_ref_updates_none() {
        let p = policy(&[("refs/heads/main", &["no-push"])], &[]);
        let mut input = Vec::new();
        write_pkt(&mut input, "version=1\0push-options atomic").unwrap();
        input.extend_from_slice(b"0000");
        // The allowed ref comes first: it must not be updated before the refused one is seen.
        write_pkt(&mut input, &format!("{ZERO} {B} refs/heads/dev")).unwrap();
        write_pkt(&mut input, &format!("{A} {B} refs/heads/main")).unwrap();
        input.extend_from_slice(b"0000");
        let mut out = Vec::new();
        hook(&p, &mut &input[..], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("ng refs/heads/main no-push"), "{text:?}");
        assert!(
            text.contains(&format!("ng refs/heads/dev {ATOMIC_REFUSED}")),
            "{text:?}"
        );
        assert!(!text.contains("ok "), "{text:?}");
        assert!(wants_atomic(b"version=1\0atomic"));
        assert!(!wants_atomic(b"version=1\0push-options"));
        assert!(!wants_atomic(b"version=1 atomic"));
    }
}
