//! Repository-ID patterns for `[[org.NAME.repo]] match`: `*` is any run within one segment,
//! `**` any run across segments, everything else literal.

use std::fmt;

use serde::Deserialize;

/// A compiled pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    Star,
    DoubleStar,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The pattern is empty.
    #[error("match pattern is empty; use \"**\" to match every repository")]
    Empty,
    /// Three or more stars in a row.
    #[error(
        "match pattern {0:?} has three stars in a row; use * within a segment or ** across segments"
    )]
    TooManyStars(String),
    /// A shape no repository ID has: a leading or trailing `/`, an empty, `.` or `..` segment, or
    /// a `.git` ending (the ID is the path without it).
    #[error(
        "match pattern {0:?} can never match: repository IDs have no leading or trailing '/', no empty, '.' or '..' segment and no .git ending; write it as {1:?}"
    )]
    NeverMatches(String, String),
    /// A character no repository ID contains.
    #[error(
        "match pattern {0:?} contains a character that no repository ID can hold (whitespace, control character or backslash)"
    )]
    BadCharacter(String),
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.contains("***") {
            return Err(GlobError::TooManyStars(pattern.to_owned()));
        }
        if pattern
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
        {
            return Err(GlobError::BadCharacter(pattern.to_owned()));
        }
        let fixed = pattern.trim_matches('/');
        let fixed = fixed.strip_suffix(".git").unwrap_or(fixed);
        let fixed = fixed
            .split('/')
            .filter(|s| !s.is_empty() && *s != "." && *s != "..")
            .collect::<Vec<_>>()
            .join("/");
        if fixed != pattern {
            let fixed = if fixed.is_empty() {
                "**".to_owned()
            } else {
                fixed
            };
            return Err(GlobError::NeverMatches(pattern.to_owned(), fixed));
        }
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    Token::DoubleStar
                }
                '*' => Token::Star,
                c => Token::Literal(c),
            });
        }
        Ok(Self {
            source: pattern.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `id` matches the whole pattern.
    ///
    /// ```
    /// use git_credential_codestorage::glob::Glob;
    ///
    /// assert!(Glob::new("mirrors/*").unwrap().matches("mirrors/linux"));
    /// assert!(!Glob::new("mirrors/*").unwrap().matches("mirrors/a/b"));
    /// assert!(Glob::new("agents/**").unwrap().matches("agents/a/b"));
    /// ```
    pub fn matches(&self, id: &str) -> bool {
        let text: Vec<char> = id.chars().collect();
        // reachable[j]: the tokens so far can consume exactly text[..j]. O(pattern × id), no
        // backtracking blow-up on hostile patterns.
        let mut reachable = vec![false; text.len() + 1];
        reachable[0] = true;
        for token in &self.tokens {
            let mut next = vec![false; text.len() + 1];
            match token {
                Token::Literal(c) => {
                    for j in 0..text.len() {
                        next[j + 1] = reachable[j] && text[j] == *c;
                    }
                }
                Token::Star | Token::DoubleStar => {
                    let crosses = *token == Token::DoubleStar;
                    for j in 0..=text.len() {
                        next[j] = reachable[j]
                            || (j > 0 && next[j - 1] && (crosses || text[j - 1] != '/'));
                    }
                }
            }
            reachable = next;
        }
        reachable[text.len()]
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Glob::new(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_that_can_never_match_are_refused_with_the_fix() {
        for (bad, fix) in [
            ("/team/*", "team/*"),
            ("team/*.git", "team/*"),
            ("team//x", "team/x"),
            ("team/*/", "team/*"),
            ("./team/x", "team/x"),
            ("team/../x", "team/x"),
        ] {
            let err = Glob::new(bad).unwrap_err();
            assert_eq!(err, GlobError::NeverMatches(bad.into(), fix.into()));
            assert!(err.to_string().contains(&format!("write it as {fix:?}")));
        }
        assert!(Glob::new("team/*").is_ok() && Glob::new("**").is_ok());
    }
    use proptest::prelude::*;

    fn m(pattern: &str, id: &str) -> bool {
        Glob::new(pattern).unwrap().matches(id)
    }

    #[test]
    fn literal_star_and_double_star() {
        assert!(m("team/x", "team/x"));
        assert!(!m("team/x", "team/xy"));
        assert!(m("mirrors/*", "mirrors/linux"));
        assert!(!m("mirrors/*", "mirrors/a/b"));
        assert!(!m("mirrors/*", "mirrors"));
        assert!(m("agents/**", "agents/a/b/c"));
        assert!(m("agents/**", "agents/"));
        assert!(!m("agents/**", "agentsx/a"));
        assert!(m("**", "anything/at/all"));
        assert!(m("*-bot", "ci-bot"));
        assert!(!m("*-bot", "team/ci-bot"));
        assert!(m("**/*-bot", "team/ci-bot"));
    }

    #[test]
    fn refuses_bad_patterns() {
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
        assert!(matches!(
            Glob::new("a/***"),
            Err(GlobError::TooManyStars(_))
        ));
        assert!(matches!(Glob::new("a b"), Err(GlobError::BadCharacter(_))));
        assert!(matches!(Glob::new("a\\b"), Err(GlobError::BadCharacter(_))));
    }

    /// A deliberately naive recursive matcher: the specification, stated plainly.
    fn reference(pattern: &[char], text: &[char]) -> bool {
        match pattern {
            [] => text.is_empty(),
            ['*', '*', rest @ ..] => (0..=text.len()).any(|i| reference(rest, &text[i..])),
            ['*', rest @ ..] => (0..=text.len())
                .take_while(|&i| i == 0 || text[i - 1] != '/')
                .any(|i| reference(rest, &text[i..])),
            [c, rest @ ..] => text.first() == Some(c) && reference(rest, &text[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(pattern in "[ab/*]{1,8}", id in "[ab/]{0,10}") {
            // Patterns refused as never matching (`/a`, `a//b`) have no matcher to compare.
            let Ok(glob) = Glob::new(&pattern) else {
                return Ok(());
            };
            let chars: Vec<char> = pattern.chars().collect();
            let ids: Vec<char> = id.chars().collect();
            prop_assert_eq!(glob.matches(&id), reference(&chars, &ids));
        }
    }
}
