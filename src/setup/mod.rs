//! `setup`: adds (or removes) an organisation in the config file and routes its hosts to this
//! helper in git's config, changing only what differs, so that running it again changes nothing.
//!
//! The config file is edited with `toml_edit`, which keeps the user's comments, order and other
//! keys; the result is validated with the same parser `get` uses, and the key is loaded, before
//! anything is written.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, Item, Table, TableLike, Value};

use crate::config::{self, Config};
use crate::env::Env;
use crate::error::Error;
use crate::gitconfig::{self, Git, Scope};
use crate::key;
use crate::resolve;

/// Where an organisation's key comes from, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChoice {
    /// `key_file`: a PEM file.
    File(String),
    /// `key_env`: an environment variable holding the PEM text.
    Env(String),
    /// `key_command`: a program printing the PEM text.
    Command(Vec<String>),
}

/// What `setup` is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The organisation.
    pub org: String,
    /// Its key; required unless removing.
    pub key: Option<KeyChoice>,
    /// Its hosts; empty keeps what the config says (default `<org>.code.storage`).
    pub hosts: Vec<String>,
    /// Which git config file to write.
    pub scope: Scope,
    /// Print what would change, change nothing.
    pub dry_run: bool,
    /// Take the organisation out instead.
    pub remove: bool,
}

const KEY_FIELDS: [&str; 3] = ["key_file", "key_env", "key_command"];

/// Adds `[org.NAME]` to the config text or updates its key (and hosts, when given), keeping
/// everything else, comments included, as it was. Values already equal are not touched.
pub fn upsert_org(
    text: &str,
    org: &str,
    key: &KeyChoice,
    hosts: &[String],
) -> Result<String, Error> {
    let mut doc = parse_document(text)?;
    let fresh = text.trim().is_empty();
    let orgs = org_tables(&mut doc)?;
    if orgs.get(org).is_none() {
        orgs.insert(org, Item::Table(Table::new()));
    }
    let item = orgs.get_mut(org).expect("inserted above");
    if let Some(table) = item.as_table_mut() {
        // `[[org.NAME.repo]]` alone leaves `[org.NAME]` implicit; our keys need its header.
        table.set_implicit(false);
    }
    let table = item
        .as_table_like_mut()
        .ok_or_else(|| Error::msg(format!("org.{org} in the config is not a table")))?;
    let (field, value) = match key {
        KeyChoice::File(path) => ("key_file", Value::from(path.as_str())),
        KeyChoice::Env(name) => ("key_env", Value::from(name.as_str())),
        KeyChoice::Command(argv) => ("key_command", Value::Array(Array::from_iter(argv))),
    };
    for other in KEY_FIELDS.iter().filter(|f| **f != field) {
        table.remove(other);
    }
    set(table, field, value);
    if !hosts.is_empty() {
        set(table, "hosts", Value::Array(Array::from_iter(hosts)));
    }
    let mut out = doc.to_string();
    if fresh {
        out.insert_str(
            0,
            "# git-credential-codestorage: organisations, keys and token settings.\n# Reference: docs/configuration.md\n\n",
        );
    }
    Ok(out)
}

/// Removes `[org.NAME]` and its repository rules; `None` if it is not there.
pub fn remove_org(text: &str, org: &str) -> Result<Option<String>, Error> {
    let mut doc = parse_document(text)?;
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
    Ok(Some(doc.to_string()))
}

fn parse_document(text: &str) -> Result<DocumentMut, Error> {
    text.parse::<DocumentMut>()
        .map_err(|e| Error::msg(format!("the config is not valid TOML: {}", e.message())))
}

fn org_tables(doc: &mut DocumentMut) -> Result<&mut dyn TableLike, Error> {
    if !doc.contains_key("org") {
        let mut orgs = Table::new();
        orgs.set_implicit(true);
        doc.insert("org", Item::Table(orgs));
    }
    doc.get_mut("org")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| Error::msg("`org` in the config is not a table"))
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

/// The git credential URLs for every host of every organisation in `config`.
pub fn credential_urls(config: &Config) -> BTreeSet<String> {
    config.orgs.values().flat_map(org_urls).collect()
}

fn org_urls(org: &config::Org) -> Vec<String> {
    let mut urls = Vec::new();
    for host in &org.hosts {
        urls.push(gitconfig::credential_url("https", host));
        if org.allow_http && resolve::is_loopback(host) {
            urls.push(gitconfig::credential_url("http", host));
        }
    }
    urls
}

/// A key-file path as the config should hold it: relative paths in the config are relative to
/// the config file, so one typed relative to the current directory is made absolute.
pub fn key_file_for_config(given: &str, cwd: &Path) -> String {
    let path = Path::new(given);
    if given.starts_with("~/") || path.is_absolute() {
        given.to_owned()
    } else {
        cwd.join(path).to_string_lossy().into_owned()
    }
}

/// One git config key whose values `setup` changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    key: String,
    from: Vec<String>,
    to: Vec<String>,
}

/// Runs `setup`: edits the config file, checks the key, and writes git's config with `helper`
/// as the helper value. Progress goes to `out`.
pub fn run(
    options: &Options,
    env: &dyn Env,
    git: &Git,
    helper: &str,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let path = config_path(env)?;
    let old_text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::msg(format!("cannot read {}: {e}", path.display()))),
    };
    // A broken file is reported, not edited: its meaning is unclear.
    let old_config = config::parse(&old_text, &path)?;
    let new_text = if options.remove {
        match remove_org(&old_text, &options.org)? {
            Some(text) => text,
            None => {
                say(
                    out,
                    format_args!(
                        "{} has no [org.{}]; nothing to remove there",
                        path.display(),
                        options.org
                    ),
                )?;
                old_text.clone()
            }
        }
    } else {
        let key = options
            .key
            .as_ref()
            .ok_or_else(|| Error::msg("setup needs --key-file, --key-env or --key-command"))?;
        upsert_org(&old_text, &options.org, key, &options.hosts)?
    };
    let new_config = config::parse(&new_text, &path)?;
    if !options.remove {
        let org = new_config.orgs.get(&options.org).ok_or_else(|| {
            Error::msg(format!("[org.{}] is missing after the edit", options.org))
        })?;
        let load_options = resolve::load_options(Some(org), env)?;
        let key = key::load(&org.key, env, load_options).map_err(|source| Error::Key {
            org: org.name.clone(),
            source,
        })?;
        say(
            out,
            format_args!("ok: {} loads ({})", org.key, key.algorithm()),
        )?;
    }

    let wanted_urls = credential_urls(&new_config);
    let mut old_urls = credential_urls(&old_config);
    if options.remove {
        // Its default host, even if the file never named it (a second --remove, say).
        old_urls.insert(gitconfig::credential_url(
            "https",
            &format!("{}.code.storage", options.org),
        ));
    }
    let stale: Vec<&String> = old_urls.difference(&wanted_urls).collect();
    let mut changes = Vec::new();
    for url in &wanted_urls {
        for wanted in gitconfig::wanted(url, helper) {
            let from = git.get_all(options.scope, &wanted.key)?;
            if from != wanted.values {
                changes.push(Change {
                    key: wanted.key,
                    from,
                    to: wanted.values,
                });
            }
        }
    }
    for url in &stale {
        for wanted in gitconfig::wanted(url, helper) {
            let from = git.get_all(options.scope, &wanted.key)?;
            if !from.is_empty() {
                changes.push(Change {
                    key: wanted.key,
                    from,
                    to: Vec::new(),
                });
            }
        }
    }

    let config_changed = new_text != old_text;
    if options.dry_run {
        if config_changed {
            say(out, format_args!("would write {}:", path.display()))?;
            for line in new_text.lines() {
                say(
                    out,
                    format_args!("{}{line}", if line.is_empty() { "" } else { "    " }),
                )?;
            }
        } else {
            say(out, format_args!("{} is up to date", path.display()))?;
        }
        if changes.is_empty() {
            say(out, format_args!("git config is up to date"))?;
        }
        for change in &changes {
            if !change.from.is_empty() {
                say(
                    out,
                    format_args!(
                        "would run: {}",
                        gitconfig::unset_command(options.scope, &change.key)
                    ),
                )?;
            }
            for value in &change.to {
                say(
                    out,
                    format_args!(
                        "would run: {}",
                        gitconfig::add_command(options.scope, &change.key, value)
                    ),
                )?;
            }
        }
        return Ok(());
    }

    if config_changed {
        write_config(&path, &new_text)
            .map_err(|e| Error::msg(format!("cannot write {}: {e}", path.display())))?;
        say(out, format_args!("wrote {}", path.display()))?;
    } else {
        say(out, format_args!("{} is up to date", path.display()))?;
    }
    for change in &changes {
        git.replace_all(options.scope, &change.key, &change.to)?;
        let shown: Vec<String> = change
            .to
            .iter()
            .map(|v| {
                if v.is_empty() {
                    "(reset)".to_owned()
                } else {
                    v.clone()
                }
            })
            .collect();
        if change.to.is_empty() {
            say(
                out,
                format_args!(
                    "git config {}: removed {}",
                    scope_name(options.scope),
                    change.key
                ),
            )?;
        } else {
            say(
                out,
                format_args!(
                    "git config {}: {} = {}",
                    scope_name(options.scope),
                    change.key,
                    shown.join(", ")
                ),
            )?;
        }
    }
    for url in &stale {
        git.remove_section_if_empty(options.scope, url)?;
    }
    if changes.is_empty() {
        say(
            out,
            format_args!("git config {} is up to date", scope_name(options.scope)),
        )?;
    }
    if !options.remove
        && let Some(org) = new_config.orgs.get(&options.org)
        && let Some(host) = org.hosts.first()
    {
        say(
            out,
            format_args!(
                "ready: git clone https://{host}/REPO.git (check everything with `git-credential-codestorage doctor`)"
            ),
        )?;
    }
    Ok(())
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Global => "--global",
        Scope::Local => "--local",
    }
}

fn say(out: &mut dyn Write, line: std::fmt::Arguments<'_>) -> Result<(), Error> {
    writeln!(out, "{line}").map_err(|e| Error::msg(format!("cannot write to stdout: {e}")))
}

/// The config file to edit: the one `get` reads, or the file a symlink there points at (so a
/// config kept in a dotfiles repository stays a link).
fn config_path(env: &dyn Env) -> Result<PathBuf, Error> {
    let path = config::default_path(env).ok_or_else(|| {
        Error::msg("cannot find the configuration directory; set CODESTORAGE_CONFIG to a file path")
    })?;
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => path
            .canonicalize()
            .map_err(|e| Error::msg(format!("{} is a broken link: {e}", path.display()))),
        _ => Ok(path),
    }
}

/// Writes beside the file and renames over it, keeping its permissions: an interrupted setup
/// leaves the old file whole.
fn write_config(path: &Path, text: &str) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    let temporary = dir.join(name);
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&temporary, meta.permissions())?;
        }
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn file(path: &str) -> KeyChoice {
        KeyChoice::File(path.into())
    }

    #[test]
    fn updating_a_key_keeps_comments_order_and_rules() {
        let out = upsert_org(USER_CONFIG, "acme", &file("/new/acme.pem"), &[]).unwrap();
        assert_eq!(
            out,
            USER_CONFIG.replace("\"/old/acme.pem\"", "\"/new/acme.pem\"")
        );
        config::parse(&out, Path::new("/c.toml")).unwrap();
    }

    #[test]
    fn the_same_setup_twice_changes_nothing() {
        let once = upsert_org(
            USER_CONFIG,
            "gamma",
            &file("/k/gamma.pem"),
            &["git.gamma.dev".into()],
        )
        .unwrap();
        let twice = upsert_org(
            &once,
            "gamma",
            &file("/k/gamma.pem"),
            &["git.gamma.dev".into()],
        )
        .unwrap();
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
            upsert_org(USER_CONFIG, "acme", &file("/old/acme.pem"), &[]).unwrap(),
            USER_CONFIG
        );
    }

    #[test]
    fn switching_key_source_replaces_the_old_one() {
        let out = upsert_org(
            USER_CONFIG,
            "beta",
            &KeyChoice::Command(vec!["op".into(), "read".into(), "op://v/k".into()]),
            &[],
        )
        .unwrap();
        let config = config::parse(&out, Path::new("/c.toml")).unwrap();
        assert_eq!(
            config.orgs["beta"].key,
            crate::key::KeySource::Command(vec!["op".into(), "read".into(), "op://v/k".into()])
        );
        assert!(!out.contains("BETA_KEY"));
        assert!(out.contains("# rotated in May"));
    }

    #[test]
    fn a_new_file_gets_a_header_and_a_table() {
        let out = upsert_org("", "acme", &KeyChoice::Env("ACME_KEY".into()), &[]).unwrap();
        assert!(out.starts_with("# git-credential-codestorage"), "{out}");
        assert!(
            out.ends_with("\n[org.acme]\nkey_env = \"ACME_KEY\"\n"),
            "{out}"
        );
    }

    #[test]
    fn rules_without_an_org_header_get_one() {
        let text = "[[org.acme.repo]]\nmatch = \"x\"\nttl = 60\n";
        let out = upsert_org(text, "acme", &file("/k.pem"), &[]).unwrap();
        let config = config::parse(&out, Path::new("/c.toml")).unwrap();
        assert_eq!(config.orgs["acme"].rules.len(), 1);
        assert_eq!(
            config.orgs["acme"].key,
            crate::key::KeySource::File("/k.pem".into())
        );
    }

    #[test]
    fn removing_takes_the_table_and_its_rules_only() {
        let out = remove_org(USER_CONFIG, "acme").unwrap().unwrap();
        assert_eq!(
            out,
            "# my settings\nttl = \"30m\"   # short\n\n[org.beta]\nkey_env = \"BETA_KEY\"\n"
        );
        assert_eq!(remove_org(&out, "acme").unwrap(), None);
        assert_eq!(remove_org("", "acme").unwrap(), None);
        let only = remove_org("[org.acme]\nkey_env = \"K\"\n", "acme")
            .unwrap()
            .unwrap();
        assert_eq!(only, "");
    }

    #[test]
    fn urls_cover_every_host_once() {
        let config = config::parse(USER_CONFIG, Path::new("/c.toml")).unwrap();
        let urls: Vec<_> = credential_urls(&config).into_iter().collect();
        assert_eq!(
            urls,
            ["https://*.code.storage", "https://git.acme.dev:8443"]
        );
        let local = config::parse(
            "[org.t]\nkey_env = \"K\"\nhosts = [\"127.0.0.1:9\"]\nallow_http = true\n",
            Path::new("/c.toml"),
        )
        .unwrap();
        let urls: Vec<_> = credential_urls(&local).into_iter().collect();
        assert_eq!(urls, ["http://127.0.0.1:9", "https://127.0.0.1:9"]);
    }

    #[test]
    fn relative_key_files_become_absolute() {
        let cwd = Path::new("/home/u/work");
        assert_eq!(
            key_file_for_config("keys/a.pem", cwd),
            "/home/u/work/keys/a.pem"
        );
        assert_eq!(key_file_for_config("/k/a.pem", cwd), "/k/a.pem");
        assert_eq!(key_file_for_config("~/k/a.pem", cwd), "~/k/a.pem");
    }
}
