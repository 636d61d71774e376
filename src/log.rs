//! What the helper tells the user on stderr: errors always, decisions with `CODESTORAGE_DEBUG=1`.
//!
//! git passes a helper's stderr straight to the terminal, so every value that came from a request,
//! the environment or a file is shown through [`Shown`] or [`Escaped`], never raw.

use std::fmt;
use std::io::Write;

/// The prefix of every line the helper writes to stderr.
pub const PREFIX: &str = "git-credential-codestorage";

/// Where diagnostics go: errors always, decisions only when debugging is on.
pub struct Log<'a> {
    out: &'a mut dyn Write,
    debug: bool,
}

impl<'a> Log<'a> {
    /// Writes to `out`; decisions only when `debug` is on.
    pub fn new(out: &'a mut dyn Write, debug: bool) -> Self {
        Self { out, debug }
    }

    /// Whether decisions are shown.
    pub fn debugging(&self) -> bool {
        self.debug
    }

    /// One line the user must see.
    pub fn error(&mut self, message: impl fmt::Display) {
        // A broken stderr is no reason to fail git's request.
        let _ = writeln!(self.out, "{PREFIX}: {message}");
    }

    /// One line describing a decision, shown with `CODESTORAGE_DEBUG=1`.
    pub fn debug(&mut self, message: impl fmt::Display) {
        if self.debug {
            let _ = writeln!(self.out, "{PREFIX}: debug: {message}");
        }
    }
}

/// A value from outside, quoted, with control characters escaped: `"a\u{1b}b"`.
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A value from outside, unquoted, with control characters (and only those) escaped.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_lines_only_when_asked_and_values_escaped() {
        let mut out = Vec::new();
        let mut log = Log::new(&mut out, false);
        log.debug("hidden");
        log.error(format_args!("host {}", Escaped("evil\u{1b}[2J\nx")));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "git-credential-codestorage: host evil\\u{1b}[2J\\nx\n"
        );
        assert_eq!(Shown("a\u{7}").to_string(), "\"a\\u{7}\"");
    }
}
