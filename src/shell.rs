//! Quoting for a POSIX shell: every fix the helper prints is a command the user can paste.

/// Quotes `text` for a POSIX shell, leaving plain words as they are.
pub fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@+,".contains(&b));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting_is_minimal_and_safe() {
        assert_eq!(
            quote("credential.https://*.code.storage.helper"),
            "'credential.https://*.code.storage.helper'"
        );
        assert_eq!(quote(""), "''");
        assert_eq!(quote("codestorage"), "codestorage");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
