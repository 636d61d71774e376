//! docs/troubleshooting.md against the code, both ways: every message the doc names is printed
//! by some source file, and every `#[error("...")]` message in `src/` is named in the doc.
//!
//! The doc names a message in the first column of a table headed `Message`, as a `code` span
//! with the values in CAPITALS (`key file PATH does not exist`). What is left when the capitals
//! and `...` are cut out is the message's fixed text, which must occur in a string literal of a
//! source file; and every fixed text of each `#[error]` attribute (the parts between its
//! arguments) must occur in one and the same of the doc's messages.
//!
//! Sample output in the docs (a `console` block's `$ git-credential-codestorage ...` lines and
//! what follows them) is run with the real binary and must match it, values that differ from
//! machine to machine aside.

use crate::support;

use std::path::{Path, PathBuf};

use support::cli::User;

const DOC: &str = "docs/troubleshooting.md";

/// `#[error]` messages the doc does not list, each with the reason.
const EXEMPT: &[(&str, &str)] = &[(
    "problems found",
    "doctor's exit status: the FAIL lines before it are the messages, and the doc lists those",
)];

/// Every `.rs` file under `src/`, with its text; the emulator (`src/bin/codestorage-emulator`)
/// is a test server, not the helper, so its messages are not the helper's.
fn sources() -> Vec<(PathBuf, String)> {
    support::sources::helper_sources()
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect()
}

/// A string literal: where it starts (byte offset) and its value, escapes decoded.
struct Literal {
    start: usize,
    value: String,
}

/// The string literals of Rust `source` ("...", r"...", r#"..."#, b"..."), skipping comments,
/// char literals and lifetimes.
fn literals(source: &str) -> Vec<Literal> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = source[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = source[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + n + 4);
            }
            b'\'' => {
                // A char literal ('x', '\n', '\'', '"') or a lifetime ('a).
                if bytes.get(i + 1) == Some(&b'\\') {
                    i = source[i + 3..]
                        .find('\'')
                        .map_or(bytes.len(), |n| i + 3 + n + 1);
                } else {
                    let c = source[i + 1..].chars().next().map_or(1, char::len_utf8);
                    i += if bytes.get(i + 1 + c) == Some(&b'\'') {
                        c + 2
                    } else {
                        1
                    };
                }
            }
            b'r' if !prev_is_ident(bytes, i)
                && matches!(bytes.get(i + 1), Some(b'"' | b'#'))
                && source[i + 1..].trim_start_matches('#').starts_with('"') =>
            {
                let hashes = source[i + 1..].len() - source[i + 1..].trim_start_matches('#').len();
                let open = i + 1 + hashes + 1;
                let close = format!("\"{}", "#".repeat(hashes));
                let end = source[open..].find(&close).unwrap() + open;
                out.push(Literal {
                    start: i,
                    value: source[open..end].to_owned(),
                });
                i = end + close.len();
            }
            b'"' => {
                let mut value = String::new();
                let mut j = i + 1;
                loop {
                    let c = source[j..].chars().next().unwrap();
                    match c {
                        '"' => break,
                        '\\' => {
                            let next = source[j + 1..].chars().next().unwrap();
                            match next {
                                'n' => value.push('\n'),
                                't' => value.push('\t'),
                                'r' => value.push('\r'),
                                '0' => value.push('\0'),
                                '\\' | '"' | '\'' => value.push(next),
                                // A line continuation: the newline and the next line's indent go.
                                '\n' => {
                                    let rest = &source[j + 2..];
                                    j += 2 + (rest.len() - rest.trim_start().len());
                                    continue;
                                }
                                other => {
                                    value.push('\\');
                                    value.push(other);
                                }
                            }
                            j += 1 + next.len_utf8();
                        }
                        c => {
                            value.push(c);
                            j += c.len_utf8();
                        }
                    }
                }
                out.push(Literal { start: i, value });
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    out
}

fn prev_is_ident(bytes: &[u8], i: usize) -> bool {
    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
}

/// The fixed texts of a format string: the parts between `{...}` arguments, `{{` and `}}`
/// read as braces.
fn format_parts(format: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                parts.last_mut().unwrap().push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                parts.last_mut().unwrap().push('}');
            }
            '{' => {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                parts.push(String::new());
            }
            c => parts.last_mut().unwrap().push(c),
        }
    }
    parts
}

/// The messages the doc names: each `code` span in the first cell of a row of a table whose
/// first header is `Message`, with its line in the doc.
fn doc_messages(doc: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_table = false;
    for (number, line) in doc.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells = split_cells(line);
        if cells.first().is_some_and(|c| c.trim() == "Message") {
            in_table = true;
            continue;
        }
        if !in_table || cells.first().is_some_and(|c| c.trim().starts_with("---")) {
            continue;
        }
        for span in code_spans(&cells[0]) {
            out.push((number + 1, span));
        }
    }
    out
}

/// A table row's cells, `\|` read as a `|` inside a cell.
fn split_cells(row: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut chars = row.trim().trim_start_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cells.last_mut().unwrap().push('|');
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

/// The `code` spans of a cell: `` `a` `` and ``` ``a `b` c`` ``` (a run of n backticks ends
/// at the next run of exactly n, and one space of padding each side is dropped).
fn code_spans(cell: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = cell;
    while let Some(open) = rest.find('`') {
        let ticks = rest[open..].len() - rest[open..].trim_start_matches('`').len();
        let body = &rest[open + ticks..];
        let fence = "`".repeat(ticks);
        let mut search = 0;
        let close = loop {
            let Some(at) = body[search..].find(&fence) else {
                break None;
            };
            let at = search + at;
            let run = body[at..].len() - body[at..].trim_start_matches('`').len();
            if run == ticks {
                break Some(at);
            }
            search = at + run;
        };
        let Some(close) = close else { break };
        let text = &body[..close];
        let text = if ticks > 1 {
            text.strip_prefix(' ')
                .and_then(|t| t.strip_suffix(' '))
                .unwrap_or(text)
        } else {
            text
        };
        out.push(text.to_owned());
        rest = &body[close + ticks..];
    }
    out
}

/// The fixed texts of a message as the doc writes it: the parts between the values (words in
/// CAPITALS, numbers, `...`), with the punctuation at their ends trimmed (a value's quotes and
/// the `: ` after it belong to the text around it), at least four characters long.
fn doc_parts(message: &str) -> Vec<String> {
    let chars: Vec<char> = message.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut parts = vec![String::new()];
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !word(chars[i - 1]);
        let value_end = if chars[i].is_ascii_digit() {
            // A number, with the unit after it: 600, 30s, 15m.
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            Some(j)
        } else if starts_word && chars[i].is_ascii_uppercase() {
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_ascii_uppercase() || chars[j].is_ascii_digit() || chars[j] == '_')
            {
                j += 1;
            }
            // `Ns`: a value with its unit.
            if chars.get(j) == Some(&'s') && chars.get(j + 1).is_none_or(|&c| !word(c)) {
                j += 1;
            }
            chars.get(j).is_none_or(|&c| !word(c)).then_some(j)
        } else if chars[i..].starts_with(&['.', '.', '.']) {
            Some(i + 3)
        } else if chars[i] == '…' {
            Some(i + 1)
        } else {
            None
        };
        match value_end {
            Some(end) => {
                parts.push(String::new());
                i = end;
            }
            None => {
                parts.last_mut().unwrap().push(chars[i]);
                i += 1;
            }
        }
    }
    parts
        .into_iter()
        .map(|p| p.trim_matches(|c: char| !c.is_alphanumeric()).to_owned())
        .filter(|p| p.chars().count() >= 4)
        .collect()
}

/// The first literal of each `#[error(...)]` attribute: (file, line, format string).
fn error_messages(sources: &[(PathBuf, String)]) -> Vec<(String, usize, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for (path, text) in sources {
        let literals = literals(text);
        for (at, _) in text.match_indices("#[error(") {
            let after = text[at + 8..].trim_start();
            if after.starts_with("transparent") {
                continue;
            }
            let start = text.len() - after.len();
            let literal = literals
                .iter()
                .find(|l| l.start == start)
                .unwrap_or_else(|| panic!("{}: no message literal", path.display()));
            let line = text[..at].lines().count() + 1;
            let file = path.strip_prefix(root).unwrap().display().to_string();
            out.push((file, line, literal.value.clone()));
        }
    }
    assert!(
        out.len() > 150,
        "too few #[error] messages found: {}",
        out.len()
    );
    out
}

fn doc_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC)).unwrap()
}

#[test]
fn every_message_the_doc_names_is_printed_by_the_code() {
    let sources = sources();
    let all: Vec<String> = sources
        .iter()
        .flat_map(|(_, text)| literals(text))
        .map(|l| l.value)
        .collect();
    let messages = doc_messages(&doc_text());
    assert!(
        messages.len() > 150,
        "too few messages in {DOC}: {}",
        messages.len()
    );
    let mut missing = Vec::new();
    for (line, message) in &messages {
        let parts = doc_parts(message);
        if parts.is_empty() {
            missing.push(format!(
                "{DOC}:{line}: `{message}` has no fixed text of four characters or more to look for"
            ));
        }
        for part in parts {
            if !all.iter().any(|literal| literal.contains(&part)) {
                missing.push(format!(
                    "{DOC}:{line}: `{message}`: no string literal in src/ holds {part:?}"
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the doc names messages the code does not print (fix the doc's wording):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_error_message_in_the_code_is_in_the_doc() {
    let messages: Vec<String> = doc_messages(&doc_text())
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    let mut missing = Vec::new();
    for (file, line, format) in error_messages(&sources()) {
        let parts: Vec<String> = format_parts(&format)
            .into_iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| p.chars().any(char::is_alphanumeric))
            .collect();
        let Some(longest) = parts.iter().max_by_key(|p| p.chars().count()).cloned() else {
            // Only arguments ("{origin}: {reason}"): the messages it joins are listed.
            continue;
        };
        if EXEMPT.iter().any(|(text, _)| *text == longest) {
            continue;
        }
        // Every fixed part, not only the longest, in one row: a typed message's wording is
        // all in its attribute, so the doc can be held to all of it.
        let absent = |m: &String| -> Vec<&String> {
            parts
                .iter()
                .filter(|part| !m.contains(part.as_str()))
                .collect()
        };
        // The row that holds the most of the message, and what it lacks.
        let lacking = messages
            .iter()
            .map(absent)
            .min_by_key(Vec::len)
            .unwrap_or_default();
        if !lacking.is_empty() {
            missing.push(format!(
                "{file}:{line}: {longest:?}, the closest row lacking {lacking:?}  (from {format:?})"
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "messages the code prints that {DOC} does not list (add a row to a `Message` table with the text, values in CAPITALS, or exempt it in tests/docs.rs with a reason):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_readers_are_right_about_the_forms_they_read() {
    let spans = code_spans(r"``a `b` c`` and `d` and ``` `` ```");
    assert_eq!(spans, ["a `b` c", "d", "``"]);
    assert_eq!(split_cells(r"| `a \| b` | c |")[0], " `a | b` ");
    assert_eq!(
        doc_parts("key file PATH does not exist; make a key with `CMD`..."),
        ["key file", "does not exist; make a key with"]
    );
    assert_eq!(
        doc_parts("a ttl of Ns is \"VALUE\": mode 0600, e.g. \"15m\"; P-256 keys"),
        ["a ttl of", "mode", "keys"]
    );
    assert_eq!(format_parts("a {x:?} b {{c}} {}"), ["a ", " b {c} ", ""]);
    let source = "let c = '\"'; let s = \"a\\\"b\"; // \"no\"\nlet r = r#\"x\"y\"#; fn f<'a>() {}";
    let found: Vec<String> = literals(source).into_iter().map(|l| l.value).collect();
    assert_eq!(found, ["a\"b", "x\"y"]);
}

/// Documents whose `console` blocks of these subcommands are run and compared.
const SAMPLES: &[(&str, &[&str])] = &[("docs/quickstart.md", &["setup", "doctor"])];

/// Each `$ COMMAND` line of a `console` block with the lines printed under it.
fn console_samples(doc: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_block = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            in_block = line == "```console";
            continue;
        }
        if !in_block {
            continue;
        }
        match line.strip_prefix("$ ") {
            Some(command) => out.push((command.to_owned(), Vec::new())),
            None => {
                if let Some((_, printed)) = out.last_mut() {
                    printed.push(line.to_owned());
                }
            }
        }
    }
    out
}

/// A line with what differs between machines and runs made alike: the home directory, the
/// subject, and every number (versions, dates, times).
fn normalise(line: &str, home: &str, subject: &str) -> String {
    let line = line
        .replace(home, "/home/you")
        .replace(subject, "you@laptop");
    let mut out = String::new();
    let mut in_number = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            out.push(c);
            in_number = false;
        }
    }
    out.trim_end().to_owned()
}

#[test]
fn sample_output_in_the_docs_is_what_the_binary_prints() {
    let user = User::new();
    user.keygen("acme");
    let home = user.path().to_str().unwrap().to_owned();
    let helper_dir = Path::new(support::home::HELPER).parent().unwrap();
    let path = format!(
        "{}:{}",
        helper_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let host = std::process::Command::new("uname")
        .arg("-n")
        .output()
        .unwrap();
    let subject = format!("tester@{}", String::from_utf8(host.stdout).unwrap().trim());
    let mut checked = 0;
    for (doc, subcommands) in SAMPLES {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(doc)).unwrap();
        for (command, printed) in console_samples(&text) {
            let words: Vec<String> = command
                .split_whitespace()
                .map(|w| w.replacen("~/", &format!("{home}/"), 1))
                .collect();
            if words[0] != "git-credential-codestorage" || !subcommands.contains(&words[1].as_str())
            {
                continue;
            }
            let mut run = user.command(support::home::HELPER);
            run.args(&words[1..]).env("PATH", &path);
            let output = run.output().unwrap();
            let actual: Vec<String> = String::from_utf8_lossy(&output.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&output.stderr).lines())
                .map(|l| normalise(l, &home, &subject))
                .collect();
            let expected: Vec<String> = printed
                .iter()
                .map(|l| normalise(l, &home, &subject))
                .collect();
            assert_eq!(
                expected, actual,
                "{doc}: `$ {command}` prints something else; update the sample"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} samples found");
}

/// The first-column `code` spans of the table rows in `doc` between headings `from` and `to`.
fn table_names(doc: &str, from: &str, to: &str) -> Vec<String> {
    let start = doc.find(from).unwrap_or_else(|| panic!("no {from:?}"));
    let end = start + doc[start..].find(to).unwrap_or_else(|| panic!("no {to:?}"));
    doc[start..end]
        .lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(|line| {
            let cells = split_cells(line);
            let mut spans = code_spans(&cells[0]);
            // The environment table's second column holds the aliases.
            if from.contains("Environment") {
                spans.extend(code_spans(&cells[1]));
            }
            spans
        })
        .collect()
}

#[test]
fn the_man_page_has_files_environment_and_every_config_key() {
    let man = std::process::Command::new(support::home::HELPER)
        .arg("man")
        .output()
        .unwrap();
    let man = String::from_utf8(man.stdout).unwrap();
    for section in [".SH FILES", ".SH ENVIRONMENT", ".SH CONFIGURATION"] {
        assert!(man.contains(section), "the man page lacks {section}");
    }
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let variables = table_names(&doc, "## Environment variables", "\n## ");
    let keys = table_names(&doc, "## Every key", "## Environment variables");
    assert!(
        variables.len() >= 10 && keys.len() >= 15,
        "{variables:?} {keys:?}"
    );
    let names = variables
        .iter()
        .chain(&keys)
        .flat_map(|span| span.split(", "))
        .map(|name| name.trim_matches('`').to_owned());
    let missing: Vec<String> = names
        .filter(|name| !man.contains(&format!("\\fB{name}\\fR")))
        .collect();
    assert!(
        missing.is_empty(),
        "in docs/configuration.md but not in the man page: {missing:?}"
    );
}

#[test]
fn setup_help_shows_every_line_setup_writes_to_git() {
    let user = User::new();
    let (key, _) = user.keygen("acme");
    user.setup("acme", &key);
    let help = user.ok(&["setup", "--help"]).stdout.to_ascii_lowercase();
    let written = user.git_list();
    assert!(written.lines().count() >= 4, "{written}");
    for line in written.lines() {
        // `http.https://*.code.storage.proactiveauth=auto`: the section, the name, the value.
        let (key, value) = line.split_once('=').unwrap();
        let (section, name) = key.rsplit_once('.').unwrap();
        let (kind, url) = section.split_once('.').unwrap();
        let value = if name == "helper" && !value.is_empty() {
            "codestorage"
        } else {
            value
        };
        assert!(
            help.contains(&format!("[{kind} \"{url}\"]"))
                && help.contains(&format!("{name} = {value}").trim_end().to_owned()),
            "setup --help does not show {line}:\n{help}"
        );
    }
}

#[test]
fn each_ci_recipe_configures_git_so_that_its_doctor_step_is_clean() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ci.md")).unwrap();
    // Each run of `git config --global` lines is one recipe's git side.
    let mut recipes: Vec<Vec<String>> = Vec::new();
    let mut previous_was_config = false;
    for line in doc.lines() {
        let command = line.trim_start().trim_start_matches("- ");
        let is_config = command.starts_with("git config --global ");
        if is_config && !previous_was_config {
            recipes.push(Vec::new());
        }
        if is_config {
            recipes.last_mut().unwrap().push(command.to_owned());
        }
        previous_was_config = is_config;
    }
    assert!(recipes.len() >= 3, "{recipes:?}");
    let helper_dir = Path::new(support::home::HELPER).parent().unwrap();
    let path = format!(
        "{}:{}",
        helper_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let key = support::jwt::TestKey::p256();
    for recipe in recipes {
        let user = User::new();
        let mut shell = user.command("sh");
        shell.args(["-ec", &recipe.join("\n")]).env("PATH", &path);
        assert!(shell.status().unwrap().success(), "{recipe:?}");
        let mut doctor = user.command(support::home::HELPER);
        doctor
            .arg("doctor")
            .env("PATH", &path)
            .env("CODESTORAGE_PRIVATE_KEY", &key.pem);
        let output = doctor.output().unwrap();
        let said = String::from_utf8_lossy(&output.stdout);
        let noisy: Vec<&str> = said
            .lines()
            .filter(|l| l.starts_with("warn") || l.starts_with("FAIL"))
            .collect();
        assert!(noisy.is_empty(), "{recipe:?}:\n{said}");
        assert!(output.status.success(), "{said}");
    }
}
