//! Edits of the config text with `toml_edit`, which keeps the user's comments, order and other
//! keys: add or update `[org.NAME]`, or take it out and say what went with it.

use std::path::Path;

use toml_edit::{Array, Decor, DocumentMut, Item, Key, Table, TableLike, Value};

use super::KeyChoice;
use super::error::SetupError;
use super::plan::{Removal, RemovedRule};
use crate::config::Config;

/// The key sources of `[org.NAME]`, of which exactly one may be set.
const KEY_FIELDS: [&str; 5] = [
    "key_file",
    "key_env",
    "key_command",
    "key_agent",
    "sign_command",
];

/// The key sources setup writes; anything else in `[org.NAME]` (sign_command, agent_socket,
/// ttl, ...) was written by hand.
const WRITTEN: [&str; 4] = ["key_file", "key_env", "key_command", "key_agent"];

/// Settings that belong to one key source and go when another source replaces it.
const COMPANIONS: [(&str, &str); 2] = [
    ("agent_socket", "key_agent"),
    ("public_key_file", "sign_command"),
];

/// The first lines of a config file setup creates.
const HEADER: &str = "# git-credential-codestorage: organisations, keys and token settings.\n# Reference: docs/configuration.md\n\n";

/// Adds `[org.NAME]` to the config text or updates its key (when given) and hosts (when given),
/// keeping everything else as it was. A key of another kind (`key_env` for `key_file`, say)
/// takes the old one's place, with its comments. Values already equal are not touched.
pub fn upsert_org(
    text: &str,
    path: &Path,
    org: &str,
    key: Option<&KeyChoice>,
    hosts: &[String],
) -> Result<String, SetupError> {
    let mut doc = parse_document(text, path)?;
    let fresh = text.trim().is_empty();
    let orgs = org_tables(&mut doc, path)?;
    if orgs.get(org).is_none() {
        orgs.insert(org, Item::Table(Table::new()));
    }
    let not_a_table = || SetupError::NotATable {
        path: path.to_owned(),
        name: format!("org.{org}"),
    };
    let item = orgs.get_mut(org).ok_or_else(not_a_table)?;
    if let Some(table) = item.as_table_mut() {
        // `[[org.NAME.repo]]` alone leaves `[org.NAME]` implicit; our keys need its header.
        table.set_implicit(false);
    }
    let table = item.as_table_like_mut().ok_or_else(not_a_table)?;
    if let Some(key) = key {
        let (field, value) = match key {
            KeyChoice::File(file) => ("key_file", Value::from(file.as_str())),
            KeyChoice::Env(name) => ("key_env", Value::from(name.as_str())),
            KeyChoice::Command(argv) => ("key_command", Value::Array(Array::from_iter(argv))),
            KeyChoice::Agent(key) => ("key_agent", Value::from(key.as_str())),
        };
        set_key(table, field, value);
    }
    if !hosts.is_empty() {
        set(table, "hosts", Value::Array(Array::from_iter(hosts)));
    }
    let mut out = doc.to_string();
    if fresh {
        out.insert_str(0, HEADER);
    }
    Ok(out)
}

/// Removes `[org.NAME]` and its repository rules; `None` if it is not there.
pub fn remove_org(text: &str, path: &Path, org: &str) -> Result<Option<String>, SetupError> {
    let mut doc = parse_document(text, path)?;
    let Some(orgs) = doc.get_mut("org").and_then(Item::as_table_like_mut) else {
        return Ok(None);
    };
    if orgs.remove(org).is_none() {
        return Ok(None);
    }
    let empty_implicit = doc
        .get("org")
        .and_then(Item::as_table)
        .is_some_and(|t| t.is_empty() && t.is_implicit());
    if empty_implicit {
        doc.remove("org");
    }
    let out = doc.to_string();
    // The next table's blank line stays; at the very top of the file it would be the first line.
    if !text.starts_with('\n') && out.starts_with('\n') {
        return Ok(Some(out.trim_start_matches('\n').to_owned()));
    }
    Ok(Some(out))
}

/// What removing `[org.NAME]` from `text` would delete, `None` if it is not there: its settings
/// beyond the key and hosts setup writes, its comments, and its rules (from `config`, the same
/// text parsed, which knows their patterns and lines).
pub fn removal(
    text: &str,
    path: &Path,
    config: &Config,
    org: &str,
) -> Result<Option<Removal>, SetupError> {
    let doc = parse_document(text, path)?;
    let Some(table) = doc
        .get("org")
        .and_then(Item::as_table_like)
        .and_then(|orgs| orgs.get(org))
        .and_then(Item::as_table_like)
    else {
        return Ok(None);
    };
    let settings = table
        .iter()
        .map(|(key, _)| key)
        .filter(|key| !WRITTEN.contains(key) && !matches!(*key, "hosts" | "repo"))
        .map(str::to_owned)
        .collect();
    let header_comment = doc
        .get("org")
        .and_then(Item::as_table_like)
        .and_then(|orgs| orgs.get(org))
        .and_then(Item::as_table)
        .is_some_and(|t| commented(t.decor()));
    let comments = header_comment
        || table.iter().any(|(name, item)| {
            table
                .key(name)
                .is_some_and(|k| commented(k.leaf_decor()) || commented(k.dotted_decor()))
                || item_commented(item)
        });
    let parsed = config.orgs.get(org);
    Ok(Some(Removal {
        org: org.to_owned(),
        line: parsed.map_or(0, |o| o.line),
        settings,
        comments,
        rules: parsed
            .map(|o| {
                o.rules
                    .iter()
                    .map(|rule| RemovedRule {
                        line: rule.line,
                        pattern: rule.pattern.as_str().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }))
}

fn commented(decor: &Decor) -> bool {
    let has = |raw: Option<&toml_edit::RawString>| {
        raw.and_then(toml_edit::RawString::as_str)
            .is_some_and(|s| s.contains('#'))
    };
    has(decor.prefix()) || has(decor.suffix())
}

fn item_commented(item: &Item) -> bool {
    match item {
        Item::Value(value) => value_commented(value),
        Item::Table(table) => commented(table.decor()),
        Item::ArrayOfTables(tables) => tables.iter().any(|t| commented(t.decor())),
        Item::None => false,
    }
}

fn value_commented(value: &Value) -> bool {
    commented(value.decor())
        || match value {
            Value::Array(array) => {
                array.trailing().as_str().is_some_and(|s| s.contains('#'))
                    || array.iter().any(value_commented)
            }
            Value::InlineTable(table) => table.iter().any(|(_, v)| value_commented(v)),
            _ => false,
        }
}

fn parse_document(text: &str, path: &Path) -> Result<DocumentMut, SetupError> {
    text.parse::<DocumentMut>()
        .map_err(|e| SetupError::InvalidToml {
            path: path.to_owned(),
            message: e.message().trim().replace('\n', " "),
        })
}

fn org_tables<'d>(
    doc: &'d mut DocumentMut,
    path: &Path,
) -> Result<&'d mut dyn TableLike, SetupError> {
    if !doc.contains_key("org") {
        let mut orgs = Table::new();
        orgs.set_implicit(true);
        doc.insert("org", Item::Table(orgs));
    }
    doc.get_mut("org")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| SetupError::NotATable {
            path: path.to_owned(),
            name: "org".to_owned(),
        })
}

/// Sets the organisation's key to `field = value`. An old key of another kind is replaced in
/// its place, keeping the comment lines above it and the comment after its value: the user
/// wrote them about the key, whichever kind it is now.
fn set_key(table: &mut dyn TableLike, field: &str, value: Value) {
    let old = KEY_FIELDS
        .iter()
        .copied()
        .find(|f| *f != field && table.contains_key(f) && !table.contains_key(field));
    match old {
        Some(old) => rename_in_place(table, old, field, value),
        None => set(table, field, value),
    }
    // A second key source would make the config invalid; only one can remain, and the
    // settings of the others (an agent_socket without key_agent, say) would be refused too.
    for other in KEY_FIELDS.iter().filter(|f| **f != field) {
        table.remove(other);
    }
    for (companion, owner) in COMPANIONS {
        if owner != field {
            table.remove(companion);
        }
    }
}

/// Replaces `old = ...` with `new = value` at the same position with the same decor.
fn rename_in_place(table: &mut dyn TableLike, old: &str, new: &str, mut value: Value) {
    // TableLike can only append: take every entry out and put them back in order.
    let names: Vec<String> = table.iter().map(|(name, _)| name.to_owned()).collect();
    let mut entries = Vec::with_capacity(names.len());
    for name in &names {
        let key = table.key(name).cloned().unwrap_or_else(|| Key::new(name));
        if let Some(item) = table.remove(name) {
            entries.push((key, item));
        }
    }
    for (key, item) in entries {
        if key.get() == old {
            if let Item::Value(old_value) = &item {
                *value.decor_mut() = old_value.decor().clone();
            }
            let renamed = Key::new(new)
                .with_leaf_decor(key.leaf_decor().clone())
                .with_dotted_decor(key.dotted_decor().clone());
            table
                .entry_format(&renamed)
                .or_insert(Item::Value(value.clone()));
        } else {
            table.entry_format(&key).or_insert(item);
        }
    }
}

/// Sets `key` unless it already holds `value`, keeping the old value's comments and spacing.
fn set(table: &mut dyn TableLike, key: &str, value: Value) {
    match table.get_mut(key) {
        Some(Item::Value(old)) if strings(old) == strings(&value) => {}
        Some(Item::Value(old)) => {
            let decor = old.decor().clone();
            *old = value;
            *old.decor_mut() = decor;
        }
        _ => {
            table.insert(key, Item::Value(value));
        }
    }
}

fn strings(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(s) => Some(vec![s.value().as_str()]),
        Value::Array(a) => a.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    const USER_CONFIG: &str = r#"# my settings
ttl = "30m"   # short

[org.acme]
# the laptop key
key_file = "/old/acme.pem"  # rotated in May
hosts = ["acme.code.storage", "git.acme.dev:8443"]

[[org.acme.repo]]
match = "mirrors/**"   # read-only
scopes = ["git:read"]

[org.beta]
key_env = "BETA_KEY"
"#;

    fn at() -> &'static Path {
        Path::new("/c.toml")
    }

    fn file(path: &str) -> KeyChoice {
        KeyChoice::File(path.into())
    }

    fn upsert(text: &str, org: &str, key: &KeyChoice, hosts: &[String]) -> String {
        upsert_org(text, at(), org, Some(key), hosts).unwrap()
    }

    #[test]
    fn updating_a_key_keeps_comments_order_and_rules() {
        let out = upsert(USER_CONFIG, "acme", &file("/new/acme.pem"), &[]);
        assert_eq!(
            out,
            USER_CONFIG.replace("\"/old/acme.pem\"", "\"/new/acme.pem\"")
        );
        config::parse(&out, at()).unwrap();
    }

    #[test]
    fn an_agent_key_replaces_a_sign_command_and_its_public_key_file() {
        let text = "[org.acme]\n# the KMS signer\nsign_command = [\"kms-sign\"]\npublic_key_file = \"a.pub\"\nttl = 60\n";
        let agent = KeyChoice::Agent("SHA256:x".into());
        let out = upsert(text, "acme", &agent, &[]);
        assert_eq!(
            out,
            "[org.acme]\n# the KMS signer\nkey_agent = \"SHA256:x\"\nttl = 60\n"
        );
        // A file key replaces the agent's, and its socket goes with it.
        let text = "[org.acme]\nkey_agent = \"a.pub\"\nagent_socket = \"/run/a.sock\"\n";
        assert_eq!(
            upsert(text, "acme", &file("/k.pem"), &[]),
            "[org.acme]\nkey_file = \"/k.pem\"\n"
        );
        // Another agent key keeps the socket the user chose.
        assert_eq!(
            upsert(text, "acme", &agent, &[]),
            "[org.acme]\nkey_agent = \"SHA256:x\"\nagent_socket = \"/run/a.sock\"\n"
        );
    }

    #[test]
    fn removal_counts_hand_written_signers_and_sockets() {
        let text = "[org.a]\nsign_command = [\"s\"]\npublic_key_file = \"a.pub\"\n[org.b]\nkey_agent = \"b.pub\"\nagent_socket = \"/s\"\n[org.c]\nkey_agent = \"c.pub\"\n";
        let parsed = config::parse(text, at()).unwrap();
        let settings = |org| removal(text, at(), &parsed, org).unwrap().unwrap().settings;
        assert_eq!(settings("a"), ["sign_command", "public_key_file"]);
        assert_eq!(settings("b"), ["agent_socket"]);
        assert!(settings("c").is_empty());
    }

    #[test]
    fn the_same_setup_twice_changes_nothing() {
        let hosts = ["git.gamma.dev".to_owned()];
        let once = upsert(USER_CONFIG, "gamma", &file("/k/gamma.pem"), &hosts);
        let twice = upsert(&once, "gamma", &file("/k/gamma.pem"), &hosts);
        assert_eq!(once, twice);
        assert!(
            once.starts_with(USER_CONFIG),
            "appended after the user's text:\n{once}"
        );
        assert!(
            once.ends_with(
                "[org.gamma]\nkey_file = \"/k/gamma.pem\"\nhosts = [\"git.gamma.dev\"]\n"
            ),
            "{once}"
        );
        assert_eq!(
            upsert(USER_CONFIG, "acme", &file("/old/acme.pem"), &[]),
            USER_CONFIG
        );
    }

    #[test]
    fn switching_key_source_takes_the_old_ones_place_and_comments() {
        let argv = vec!["op".to_owned(), "read".to_owned(), "op://v/k".to_owned()];
        let out = upsert(USER_CONFIG, "acme", &KeyChoice::Command(argv.clone()), &[]);
        assert_eq!(
            out,
            USER_CONFIG.replace(
                "key_file = \"/old/acme.pem\"",
                "key_command = [\"op\", \"read\", \"op://v/k\"]"
            )
        );
        let config = config::parse(&out, at()).unwrap();
        assert_eq!(
            config.orgs["acme"].key,
            crate::key::KeySource::Command(argv)
        );
        assert_eq!(config.orgs["acme"].rules.len(), 1);
        // Back to a file, and to an env var in an inline table: the same place each time.
        let back = upsert(&out, "acme", &file("/old/acme.pem"), &[]);
        assert_eq!(back, USER_CONFIG);
        let inline = "org = { beta = { key_file = \"/b.pem\", ttl = 60 } }\n";
        assert_eq!(
            upsert(inline, "beta", &KeyChoice::Env("B".into()), &[]),
            "org = { beta = { key_env = \"B\", ttl = 60 } }\n"
        );
    }

    #[test]
    fn a_new_file_gets_a_header_and_a_table() {
        let out = upsert("", "acme", &KeyChoice::Env("ACME_KEY".into()), &[]);
        assert!(out.starts_with("# git-credential-codestorage"), "{out}");
        assert!(
            out.ends_with("\n[org.acme]\nkey_env = \"ACME_KEY\"\n"),
            "{out}"
        );
    }

    #[test]
    fn rules_without_an_org_header_get_one() {
        let text = "[[org.acme.repo]]\nmatch = \"x\"\nttl = 60\n";
        let out = upsert(text, "acme", &file("/k.pem"), &[]);
        let config = config::parse(&out, at()).unwrap();
        assert_eq!(config.orgs["acme"].rules.len(), 1);
        assert_eq!(
            config.orgs["acme"].key,
            crate::key::KeySource::File("/k.pem".into())
        );
    }

    #[test]
    fn removing_takes_the_table_and_its_rules_only() {
        let out = remove_org(USER_CONFIG, at(), "acme").unwrap().unwrap();
        assert_eq!(
            out,
            "# my settings\nttl = \"30m\"   # short\n\n[org.beta]\nkey_env = \"BETA_KEY\"\n"
        );
        assert_eq!(remove_org(&out, at(), "acme").unwrap(), None);
        assert_eq!(remove_org("", at(), "acme").unwrap(), None);
        let only = remove_org("[org.acme]\nkey_env = \"K\"\n", at(), "acme")
            .unwrap()
            .unwrap();
        assert_eq!(only, "");
    }

    #[test]
    fn a_removal_lists_what_setup_did_not_write() {
        let config = config::parse(USER_CONFIG, at()).unwrap();
        let acme = removal(USER_CONFIG, at(), &config, "acme")
            .unwrap()
            .unwrap();
        assert_eq!(acme.line, 4);
        assert!(acme.settings.is_empty());
        assert!(acme.comments, "the key's comments are the user's");
        assert_eq!(
            acme.rules,
            [RemovedRule {
                line: 9,
                pattern: "mirrors/**".into()
            }]
        );
        assert!(acme.hand_written());
        let beta = removal(USER_CONFIG, at(), &config, "beta")
            .unwrap()
            .unwrap();
        assert!(!beta.hand_written(), "{beta:?}");
        assert_eq!(removal(USER_CONFIG, at(), &config, "gamma").unwrap(), None);

        let text = "[org.a]\nkey_env = \"K\"\nttl = 60\nscopes = [\"git:read\"]\n";
        let config = config::parse(text, at()).unwrap();
        let a = removal(text, at(), &config, "a").unwrap().unwrap();
        assert_eq!(a.settings, ["ttl", "scopes"]);
        assert!(!a.comments && a.hand_written());
        let text = "[org.a]\nkey_command = [\n  \"op\", # the vault\n  \"read\",\n]\n";
        let config = config::parse(text, at()).unwrap();
        assert!(removal(text, at(), &config, "a").unwrap().unwrap().comments);
    }

    #[test]
    fn broken_toml_names_the_file() {
        let err = upsert_org("[org", at(), "a", Some(&file("/k")), &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("/c.toml is not valid TOML"),
            "{err}"
        );
    }
}
