//! Code Storage's `refs` claim read as the service reads it, and policies combined so that
//! none is weakened: a sandbox's ref policies and its `push_branches` added to a rule's.
//!
//! The claim is an ordered list of `[pattern, ops]` entries and the first entry matching a ref
//! decides its ops; an entry without ops allows, and a ref no entry matches is allowed. A
//! pattern is `*` (every ref), a prefix ending in `/*` (every ref under it, at any depth), or
//! one exact ref; a pattern not starting with `refs/` is a branch, under `refs/heads/`.
//!
//! Such patterns never partly overlap: two of them cover disjoint sets of refs or one covers
//! the other's. [`merge`] relies on it to be exact: it lists every pattern of every policy, the
//! narrower before the wider, each with the union of the ops each policy gives its refs.

use crate::token::{Op, RefRule};

/// One pattern of a `refs` entry, with a short name spelled out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// One ref, exactly (a `*` inside it is a literal character).
    Exact(String),
    /// Every ref that starts with this text, which ends with `/`, and is longer than it.
    Prefix(String),
    /// Every ref.
    All,
}

impl Pattern {
    /// Reads a pattern as Code Storage does.
    pub fn parse(text: &str) -> Self {
        if text == "*" {
            return Self::All;
        }
        let full = if text.starts_with("refs/") {
            text.to_owned()
        } else {
            format!("refs/heads/{text}")
        };
        match full.strip_suffix('*') {
            Some(prefix) if prefix.ends_with('/') => Self::Prefix(prefix.to_owned()),
            _ => Self::Exact(full),
        }
    }

    /// The pattern as the claim carries it, short names spelled out.
    pub fn to_claim(&self) -> String {
        match self {
            Self::Exact(name) => name.clone(),
            Self::Prefix(prefix) => format!("{prefix}*"),
            Self::All => "*".to_owned(),
        }
    }

    /// Whether `refname` (a full ref name) is covered.
    pub fn matches(&self, refname: &str) -> bool {
        match self {
            Self::Exact(name) => refname == name,
            Self::Prefix(prefix) => refname.len() > prefix.len() && refname.starts_with(prefix),
            Self::All => true,
        }
    }

    /// Whether every ref `other` covers is covered by this pattern too.
    pub fn contains(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::All, _) => true,
            (_, Self::All) => false,
            (Self::Prefix(wide), Self::Prefix(narrow)) => narrow.starts_with(wide.as_str()),
            (Self::Prefix(_), Self::Exact(name)) => self.matches(name),
            (Self::Exact(_), Self::Prefix(_)) => false,
            (Self::Exact(a), Self::Exact(b)) => a == b,
        }
    }

    /// Orders narrower patterns before wider ones: exact refs, then prefixes, longest first,
    /// then `*`. A pattern that contains another always sorts after it.
    fn breadth(&self) -> (u8, std::cmp::Reverse<usize>, String) {
        match self {
            Self::Exact(name) => (0, std::cmp::Reverse(0), name.clone()),
            Self::Prefix(prefix) => (1, std::cmp::Reverse(prefix.len()), prefix.clone()),
            Self::All => (2, std::cmp::Reverse(0), String::new()),
        }
    }
}

/// What is wrong with a `push_branches` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BranchError {
    /// Empty, or holding a space or a control character.
    #[error(
        "push_branches entry {0:?} is not a branch name; write a branch (\"fix-123\"), a prefix ending in /* (\"agents/42/*\") or a full ref (\"refs/heads/fix-123\")"
    )]
    NotAName(String),
    /// A `*` Code Storage would read as a literal character.
    #[error(
        "push_branches entry {0:?} has a * that is not a final /*, and Code Storage reads such a * literally; cover a namespace with a prefix, e.g. \"agents/42/*\""
    )]
    Star(String),
}

/// Checks one `push_branches` entry: a branch, a prefix ending in `/*`, a full ref, or `*`.
pub fn check_branch(text: &str) -> Result<Pattern, BranchError> {
    if text.is_empty() || text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(BranchError::NotAName(text.to_owned()));
    }
    let pattern = Pattern::parse(text);
    if let Pattern::Exact(name) | Pattern::Prefix(name) = &pattern
        && name.contains('*')
    {
        return Err(BranchError::Star(text.to_owned()));
    }
    Ok(pattern)
}

/// The policy `push_branches` stands for: pushes to those refs only. Each is allowed, then
/// `["*", ["no-push"]]` refuses every other ref.
pub fn branches_policy(branches: &[Pattern]) -> Vec<RefRule> {
    branches
        .iter()
        .map(|pattern| RefRule {
            pattern: pattern.to_claim(),
            ops: Vec::new(),
        })
        .chain(std::iter::once(RefRule {
            pattern: "*".to_owned(),
            ops: vec![Op::NoPush],
        }))
        .collect()
}

/// The ops `policy` gives every ref of `pattern`'s own region (the refs no narrower pattern of
/// the merged list covers): those of its first entry whose pattern contains `pattern`.
fn ops_over<'a>(policy: &'a [(Pattern, &'a [Op])], pattern: &Pattern) -> &'a [Op] {
    policy
        .iter()
        .find(|(entry, _)| entry.contains(pattern))
        .map_or(&[], |(_, ops)| ops)
}

/// Combines `policies` into one list that gives every ref exactly the union of the ops each of
/// them gives it: nothing any of them refuses is allowed, and nothing more is refused. Entries
/// that change nothing (the same ops as the next wider entry, or none with no wider entry) are
/// left out; patterns come out with short names spelled out.
pub fn merge(policies: &[&[RefRule]]) -> Vec<RefRule> {
    let parsed: Vec<Vec<(Pattern, &[Op])>> = policies
        .iter()
        .map(|policy| {
            policy
                .iter()
                .map(|rule| (Pattern::parse(&rule.pattern), rule.ops.as_slice()))
                .collect()
        })
        .collect();
    let mut patterns: Vec<Pattern> = parsed.iter().flatten().map(|(p, _)| p.clone()).collect();
    patterns.sort_by_key(Pattern::breadth);
    patterns.dedup();
    let ops: Vec<Vec<Op>> = patterns
        .iter()
        .map(|pattern| {
            let given: Vec<Op> = parsed
                .iter()
                .flat_map(|policy| ops_over(policy, pattern))
                .copied()
                .collect();
            // One fixed order, so that equal sets compare equal.
            [Op::NoPush, Op::NoForcePush, Op::VerifySig]
                .into_iter()
                .filter(|op| given.contains(op))
                .collect()
        })
        .collect();
    let mut merged = Vec::with_capacity(patterns.len());
    for (i, pattern) in patterns.iter().enumerate() {
        // The entry that decides this pattern's refs if it is left out: the next wider one.
        let wider = (i + 1..patterns.len()).find(|&j| patterns[j].contains(pattern));
        let fallback: &[Op] = wider.map_or(&[], |j| &ops[j]);
        if ops[i] != fallback {
            merged.push(RefRule {
                pattern: pattern.to_claim(),
                ops: ops[i].clone(),
            });
        }
    }
    merged
}

/// A token's `refs`: the rule's, with the sandbox's entries and its `push_branches` added so
/// that none is weakened. The rule's list is kept as written when nothing is added.
pub fn confine(
    rule: Option<Vec<RefRule>>,
    sandbox: &[RefRule],
    push_branches: &[Pattern],
) -> Option<Vec<RefRule>> {
    if sandbox.is_empty() && push_branches.is_empty() {
        return rule;
    }
    let rule = rule.unwrap_or_default();
    let branches = if push_branches.is_empty() {
        Vec::new()
    } else {
        branches_policy(push_branches)
    };
    Some(merge(&[&rule, sandbox, &branches]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(list: &[(&str, &[Op])]) -> Vec<RefRule> {
        list.iter()
            .map(|(pattern, ops)| RefRule {
                pattern: (*pattern).to_owned(),
                ops: ops.to_vec(),
            })
            .collect()
    }

    /// The claim's meaning, stated plainly: the first matching entry's ops, as a sorted set.
    fn ops_for(policy: &[RefRule], refname: &str) -> Vec<&'static str> {
        let mut ops: Vec<&'static str> = policy
            .iter()
            .find(|r| Pattern::parse(&r.pattern).matches(refname))
            .map(|r| r.ops.iter().map(|op| op_name(*op)).collect())
            .unwrap_or_default();
        ops.sort_unstable();
        ops.dedup();
        ops
    }

    fn op_name(op: Op) -> &'static str {
        match op {
            Op::NoPush => "no-push",
            Op::NoForcePush => "no-force-push",
            Op::VerifySig => "verify-sig",
        }
    }

    #[test]
    fn patterns_read_as_code_storage_reads_them() {
        assert_eq!(Pattern::parse("*"), Pattern::All);
        assert_eq!(
            Pattern::parse("fix-123"),
            Pattern::Exact("refs/heads/fix-123".into())
        );
        assert_eq!(
            Pattern::parse("agents/42/*"),
            Pattern::Prefix("refs/heads/agents/42/".into())
        );
        assert_eq!(
            Pattern::parse("refs/tags/*"),
            Pattern::Prefix("refs/tags/".into())
        );
        assert_eq!(
            Pattern::parse("refs/heads/release-*"),
            Pattern::Exact("refs/heads/release-*".into())
        );
        let prefix = Pattern::parse("agents/42/*");
        assert!(prefix.matches("refs/heads/agents/42/a/b"));
        assert!(!prefix.matches("refs/heads/agents/42"));
        assert!(!prefix.matches("refs/heads/agents/421"));
        assert!(Pattern::parse("refs/heads/*").contains(&prefix));
        assert!(!prefix.contains(&Pattern::parse("refs/heads/*")));
        assert!(prefix.contains(&Pattern::parse("agents/42/x")));
        assert!(!prefix.contains(&Pattern::parse("refs/heads/agents/42")));
        assert!(Pattern::All.contains(&prefix) && !prefix.contains(&Pattern::All));
        assert_eq!(prefix.to_claim(), "refs/heads/agents/42/*");
    }

    #[test]
    fn push_branches_entries_are_checked() {
        assert_eq!(
            check_branch("fix-123"),
            Ok(Pattern::Exact("refs/heads/fix-123".into()))
        );
        assert!(check_branch("agents/42/*").is_ok() && check_branch("*").is_ok());
        for bad in ["", "a b", "a\nb"] {
            assert!(
                matches!(check_branch(bad), Err(BranchError::NotAName(_))),
                "{bad:?}"
            );
        }
        for bad in ["release-*", "agents/**", "a/*/b"] {
            let e = check_branch(bad).unwrap_err();
            assert!(matches!(e, BranchError::Star(_)), "{bad:?}");
            assert!(e.to_string().contains("agents/42/*"), "{e}");
        }
    }

    #[test]
    fn branches_become_allow_entries_then_no_push_for_every_other_ref() {
        let branches = [Pattern::parse("agents/42/*"), Pattern::parse("fix-123")];
        let merged = confine(None, &[], &branches).unwrap();
        assert_eq!(
            merged,
            rules(&[
                ("refs/heads/fix-123", &[]),
                ("refs/heads/agents/42/*", &[]),
                ("*", &[Op::NoPush]),
            ])
        );
        assert_eq!(
            ops_for(&merged, "refs/heads/agents/42/a/b"),
            Vec::<&str>::new()
        );
        assert_eq!(ops_for(&merged, "refs/heads/main"), ["no-push"]);
        assert_eq!(ops_for(&merged, "refs/tags/v1"), ["no-push"]);
    }

    #[test]
    fn the_rule_and_the_sandbox_keep_their_ops_on_allowed_branches() {
        let rule = rules(&[
            ("agents/42/locked", &[Op::NoPush]),
            ("refs/heads/*", &[Op::NoForcePush]),
            // Never reached in the rule (refs/heads/* comes first), so not in the merge either.
            ("fix-123", &[Op::VerifySig]),
        ]);
        let sandbox = rules(&[("refs/heads/agents/42/signed/*", &[Op::VerifySig])]);
        let branches = [Pattern::parse("agents/42/*"), Pattern::parse("fix-123")];
        let merged = confine(Some(rule), &sandbox, &branches).unwrap();
        assert_eq!(
            merged,
            rules(&[
                ("refs/heads/agents/42/locked", &[Op::NoPush]),
                ("refs/heads/fix-123", &[Op::NoForcePush]),
                (
                    "refs/heads/agents/42/signed/*",
                    &[Op::NoForcePush, Op::VerifySig]
                ),
                ("refs/heads/agents/42/*", &[Op::NoForcePush]),
                ("refs/heads/*", &[Op::NoPush, Op::NoForcePush]),
                ("*", &[Op::NoPush]),
            ])
        );
        assert_eq!(ops_for(&merged, "refs/heads/agents/42/locked"), ["no-push"]);
    }

    #[test]
    fn a_sandbox_entry_never_opens_a_ref_the_rule_names_by_its_short_name() {
        // Comparing the text before a wildcard would miss that "main" is refs/heads/main.
        let rule = rules(&[("main", &[Op::NoPush])]);
        let sandbox = rules(&[("refs/heads/*", &[Op::VerifySig])]);
        let merged = confine(Some(rule), &sandbox, &[]).unwrap();
        assert_eq!(
            ops_for(&merged, "refs/heads/main"),
            ["no-push", "verify-sig"]
        );
        assert_eq!(ops_for(&merged, "refs/heads/dev"), ["verify-sig"]);
    }

    #[test]
    fn nothing_added_keeps_the_rule_as_written() {
        let rule = rules(&[("refs/heads/release-*", &[Op::NoPush])]);
        assert_eq!(confine(Some(rule.clone()), &[], &[]), Some(rule));
        assert_eq!(confine(None, &[], &[]), None);
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            "(refs/heads/|refs/tags/|)[ab](/[ab]){0,2}",
            "(refs/heads/|refs/|)[ab](/[ab]){0,1}/\\*",
        ]
    }

    fn policy() -> impl Strategy<Value = Vec<RefRule>> {
        let op = prop_oneof![Just(Op::NoPush), Just(Op::NoForcePush), Just(Op::VerifySig)];
        proptest::collection::vec(
            (pattern(), proptest::collection::vec(op, 0..3))
                .prop_map(|(pattern, ops)| RefRule { pattern, ops }),
            0..5,
        )
    }

    proptest! {
        #[test]
        fn a_merge_gives_every_ref_exactly_the_union_of_the_ops(
            rule in policy(),
            sandbox in policy(),
            branches in proptest::collection::vec(pattern(), 0..3),
            refname in "refs/(heads|tags)/[ab](/[ab]){0,3}",
        ) {
            let branches: Vec<Pattern> = branches.iter().map(|b| Pattern::parse(b)).collect();
            let merged = confine(Some(rule.clone()), &sandbox, &branches).unwrap_or_default();
            let mut expected: Vec<&str> = ops_for(&rule, &refname);
            expected.extend(ops_for(&sandbox, &refname));
            if !branches.is_empty() && !branches.iter().any(|b| b.matches(&refname)) {
                expected.push("no-push");
            }
            expected.sort_unstable();
            expected.dedup();
            prop_assert_eq!(ops_for(&merged, &refname), expected, "{:?}", merged);
        }

        #[test]
        fn merging_with_itself_changes_no_ref(rule in policy(), refname in "refs/heads/[ab](/[ab]){0,3}") {
            let merged = merge(&[&rule, &rule]);
            prop_assert_eq!(ops_for(&merged, &refname), ops_for(&rule, &refname));
        }
    }
}
