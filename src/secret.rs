//! Secrets by type: tokens, PEM text and key bytes that cannot be printed by accident and are
//! wiped from memory when dropped.
//!
//! As cargo-credential's `Secret`, the value is reached only through [`Secret::expose`], so every
//! place that hands a secret on is visible in the code.

use std::fmt;

use zeroize::Zeroize;

/// A value that `{:?}` and `{}` show as `<redacted>` and that is zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself: for the one place that must use it (signing, writing to git).
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Changes the secret in place, e.g. appending to a buffer being read.
    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let token = Secret::new(String::from("eyJhbGciOiJFUzI1NiJ9.e30.c2ln"));
        assert_eq!(format!("{token:?} {token}"), "<redacted> <redacted>");
        assert_eq!(
            format!("{:?}", Some(&token)),
            "Some(<redacted>)",
            "nested in other types too"
        );
        assert_eq!(token.expose(), "eyJhbGciOiJFUzI1NiJ9.e30.c2ln");
    }
}
