//! Ref patterns of a token's `refs` policy: `*` is any run of characters within one segment,
//! `**` any run across segments, everything else literal. Written apart from the helper's own
//! repository-pattern matcher on purpose, so that the emulator does not check the helper's
//! patterns with the helper's code.

/// One piece of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// This exact byte.
    Byte(u8),
    /// Any run of bytes without `/`.
    Segment,
    /// Any run of bytes at all.
    Anything,
}

fn pieces(pattern: &str) -> Vec<Piece> {
    let bytes = pattern.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'*' {
            // `**` and longer runs of stars match across segments.
            let run = bytes[i..].iter().take_while(|b| **b == b'*').count();
            out.push(if run >= 2 {
                Piece::Anything
            } else {
                Piece::Segment
            });
            i += run;
        } else {
            out.push(Piece::Byte(bytes[i]));
            i += 1;
        }
    }
    out
}

/// Whether the whole of `name` matches `pattern`.
///
/// Works on bytes: `*` and `/` are ASCII, so they never occur inside a multi-byte character.
/// A table over (piece, position), filled from the end, keeps the time at
/// pattern length × name length whatever the pattern, with no backtracking.
pub fn matches(pattern: &str, name: &str) -> bool {
    let text = name.as_bytes();
    let n = text.len();
    // after[j]: the pieces not yet applied match text[j..]. Past the last piece only the end does.
    let mut after = vec![false; n + 1];
    after[n] = true;
    for piece in pieces(pattern).into_iter().rev() {
        let mut here = vec![false; n + 1];
        for j in (0..=n).rev() {
            here[j] = match piece {
                Piece::Byte(b) => j < n && text[j] == b && after[j + 1],
                Piece::Segment => after[j] || (j < n && text[j] != b'/' && here[j + 1]),
                Piece::Anything => after[j] || (j < n && here[j + 1]),
            };
        }
        after = here;
    }
    after[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stars_stay_in_a_segment_and_double_stars_cross() {
        assert!(matches("refs/heads/main", "refs/heads/main"));
        assert!(!matches("refs/heads/main", "refs/heads/main2"));
        assert!(!matches("refs/heads/main", "refs/heads/mai"));
        assert!(matches("refs/heads/*", "refs/heads/topic"));
        assert!(!matches("refs/heads/*", "refs/heads/team/topic"));
        assert!(matches("refs/heads/*", "refs/heads/"));
        assert!(matches("refs/heads/**", "refs/heads/team/topic"));
        assert!(!matches("refs/heads/**", "refs/tags/v1"));
        assert!(matches("refs/*/release-*", "refs/heads/release-1.2"));
        assert!(matches("**", "refs/anything/at/all"));
        assert!(matches("***", "refs/a/b"));
        assert!(matches("", ""));
        assert!(!matches("", "refs/heads/main"));
        assert!(matches("refs/heads/é*", "refs/heads/éte"));
    }

    /// The specification, stated plainly as a recursive matcher over characters.
    fn reference(pattern: &[char], text: &[char]) -> bool {
        match pattern {
            [] => text.is_empty(),
            ['*', '*', rest @ ..] => {
                let rest = {
                    let mut r = rest;
                    while let ['*', tail @ ..] = r {
                        r = tail;
                    }
                    r
                };
                (0..=text.len()).any(|i| reference(rest, &text[i..]))
            }
            ['*', rest @ ..] => (0..=text.len())
                .take_while(|&i| i == 0 || text[i - 1] != '/')
                .any(|i| reference(rest, &text[i..])),
            [c, rest @ ..] => text.first() == Some(c) && reference(rest, &text[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(pattern in "[ab/*é]{0,9}", name in "[ab/é]{0,10}") {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = name.chars().collect();
            prop_assert_eq!(matches(&pattern, &name), reference(&p, &t));
        }
    }
}
