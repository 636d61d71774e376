//! The library's modules point one way: a module uses its own layer and the layers below it,
//! never one above. The layers are the `Modules:` lines of ARCHITECTURE.md, read here, so the
//! document and the check cannot drift apart; every `crate::NAME` path in `src/` (code, not
//! comments or string literals) is checked against them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ARCHITECTURE: &str = "ARCHITECTURE.md";

/// `relative` inside the crate, wherever the tests run from.
fn root(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Upward imports that remain while the broker moves to the new homes, as (file or folder, the
/// module it uses). Each entry must still be used (the test fails when one is gone, so the list
/// only shrinks):
const KNOWN_UPWARD: &[(&str, &str)] = &[];

/// The entry of [`KNOWN_UPWARD`] that lets `file` use `used`, if any.
fn known(file: &str, used: &str) -> Option<usize> {
    KNOWN_UPWARD
        .iter()
        .position(|(place, module)| *module == used && file.starts_with(place))
}

/// One layer of ARCHITECTURE.md: its number, its name and its modules.
#[derive(Debug)]
struct Layer {
    rank: usize,
    name: String,
    modules: Vec<String>,
}

/// The layers ARCHITECTURE.md lists, bottom first: each `### N. Name` heading and the
/// backticked names on the `Modules:` line under it.
fn layers(doc: &str) -> Vec<Layer> {
    let mut layers: Vec<Layer> = Vec::new();
    for line in doc.lines() {
        if let Some(heading) = line.strip_prefix("### ")
            && let Some((number, name)) = heading.split_once(". ")
            && let Ok(rank) = number.parse()
        {
            layers.push(Layer {
                rank,
                name: name.trim().to_owned(),
                modules: Vec::new(),
            });
        } else if let Some(list) = line.strip_prefix("Modules:") {
            let layer = layers
                .last_mut()
                .expect("a Modules: line under a layer heading");
            layer.modules = list
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
        }
    }
    layers
}

/// The top-level module `path` (relative to the crate root) belongs to: `src/key/pem.rs` is
/// `key`, `src/mint.rs` is `mint`, and a module of the binary (a `mod` of `src/main.rs`, such
/// as its allocator) is `main`; `None` for `src/lib.rs`, which only declares modules.
fn module_of(path: &Path, binary_modules: &[String]) -> Option<String> {
    let inside = path.strip_prefix("src").ok()?;
    let first = inside.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    if binary_modules.iter().any(|m| m == name) {
        return Some("main".to_owned());
    }
    (name != "lib").then(|| name.to_owned())
}

/// The modules `src/main.rs` declares (`mod NAME;`): they belong to the binary, not the library.
fn binary_modules() -> Vec<String> {
    let main = code_only(&std::fs::read_to_string(root("src/main.rs")).unwrap());
    main.lines()
        .filter_map(|l| l.trim().strip_prefix("mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_owned)
        .collect()
}

/// `text` with comments and the insides of string and character literals blanked out, line
/// breaks kept, so that what is left is code and its line numbers are the file's.
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, b: u8| out.push(if b == b'\n' { b'\n' } else { b' ' });
    while i < bytes.len() {
        let rest = &bytes[i..];
        let skip_to = if rest.starts_with(b"//") {
            rest.iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |n| n)
        } else if rest.starts_with(b"/*") {
            block_comment_len(rest)
        } else if let Some(len) = raw_string_len(rest) {
            len
        } else if rest[0] == b'"' {
            quoted_len(rest, b'"')
        } else if rest[0] == b'\'' && char_literal(rest) {
            quoted_len(rest, b'\'')
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        for &b in &rest[..skip_to] {
            blank(&mut out, b);
        }
        i += skip_to;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The length of the (possibly nested) block comment at the start of `rest`.
fn block_comment_len(rest: &[u8]) -> usize {
    let (mut depth, mut i) = (0usize, 0);
    while i < rest.len() {
        if rest[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if rest[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    rest.len()
}

/// The length of the raw string (`r"…"`, `r#"…"#`, `br"…"`) at the start of `rest`, if any.
fn raw_string_len(rest: &[u8]) -> Option<usize> {
    let start = if rest.starts_with(b"br") {
        2
    } else if rest.starts_with(b"r") {
        1
    } else {
        0
    };
    if start == 0 {
        return None;
    }
    let hashes = rest[start..].iter().take_while(|&&b| b == b'#').count();
    if rest.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let body = start + hashes + 1;
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    let end = rest[body..].windows(close.len()).position(|w| w == close)?;
    Some(body + end + close.len())
}

/// The length of the string or character literal opened by `quote` at the start of `rest`.
fn quoted_len(rest: &[u8], quote: u8) -> usize {
    let mut i = 1;
    while i < rest.len() {
        match rest[i] {
            b'\\' => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    rest.len()
}

/// Whether the `'` at the start of `rest` opens a character literal rather than a lifetime.
fn char_literal(rest: &[u8]) -> bool {
    rest.get(1) == Some(&b'\\')
        || (rest.len() > 2
            && std::str::from_utf8(&rest[1..]).is_ok_and(|s| {
                let mut chars = s.chars();
                chars.next().is_some() && chars.next() == Some('\'')
            }))
}

/// Every `crate::NAME` in `code` (code only, see [`code_only`]) as (line, NAME), including
/// the names of a `use crate::{a, b::c}` group.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (index, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let inside = group.split('}').next().unwrap_or_default();
                for item in inside.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.push((index + 1, name));
                    }
                }
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((index + 1, name));
            }
        }
    }
    found
}

/// The layer of each module, by name.
fn rank_of(layers: &[Layer]) -> BTreeMap<&str, &Layer> {
    let mut by_module = BTreeMap::new();
    for layer in layers {
        for module in &layer.modules {
            let earlier = by_module.insert(module.as_str(), layer);
            assert!(
                earlier.is_none(),
                "{ARCHITECTURE} lists `{module}` in two layers"
            );
        }
    }
    by_module
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let doc = std::fs::read_to_string(root(ARCHITECTURE)).unwrap();
    let layers = layers(&doc);
    assert!(
        layers.len() >= 5,
        "{ARCHITECTURE} lists its layers as `### N. Name` headings"
    );
    let by_module = rank_of(&layers);
    let files = crate::support::sources::helper_sources();
    let mut problems = Vec::new();
    let mut seen_known = Vec::new();
    let binary = binary_modules();
    for path in &files {
        let file = path.strip_prefix(root("")).unwrap();
        let Some(module) = module_of(file, &binary) else {
            continue;
        };
        let Some(own) = by_module.get(module.as_str()) else {
            problems.push(format!(
                "{}: module `{module}` is in no layer; add it to one `Modules:` line of {ARCHITECTURE}",
                file.display()
            ));
            continue;
        };
        let code = code_only(&std::fs::read_to_string(path).unwrap());
        for (line, used) in crate_paths(&code) {
            let Some(other) = by_module.get(used.as_str()) else {
                continue;
            };
            if other.rank <= own.rank {
                continue;
            }
            let shown = file.to_string_lossy().replace('\\', "/");
            if let Some(entry) = known(&shown, &used) {
                seen_known.push(entry);
                continue;
            }
            problems.push(format!(
                "{shown}:{line}: `{module}` (layer {} {}) uses `crate::{used}` (layer {} {}), a layer above it",
                own.rank, own.name, other.rank, other.name
            ));
        }
    }
    for (entry, (file, used)) in KNOWN_UPWARD.iter().enumerate() {
        if !seen_known.contains(&entry) {
            problems.push(format!(
                "{file} no longer uses `crate::{used}`: remove it from KNOWN_UPWARD in tests/layers.rs"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_module_of_the_library_is_in_exactly_one_layer() {
    let doc = std::fs::read_to_string(root(ARCHITECTURE)).unwrap();
    let layers = layers(&doc);
    let by_module = rank_of(&layers);
    let lib = std::fs::read_to_string(root("src/lib.rs")).unwrap();
    let code = code_only(&lib);
    let mut declared: Vec<&str> = code
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    declared.push("main");
    let mut listed: Vec<&str> = by_module.keys().copied().collect();
    declared.sort_unstable();
    listed.sort_unstable();
    assert_eq!(
        declared, listed,
        "src/lib.rs's modules (and main) and the `Modules:` lines of {ARCHITECTURE} differ"
    );
}

#[test]
fn the_reader_sees_code_and_not_comments_or_strings() {
    let code = code_only(
        "use crate::key;\n// crate::broker\nlet s = \"crate::cli\"; let r = r#\"crate::cli\"#;\n\
         /* crate::cli */ let c = '\"'; fn f<'a>(x: &'a crate::token::Claims) {}\n\
         use crate::{env::Env, fs};\n",
    );
    let names: Vec<(usize, String)> = crate_paths(&code);
    let expected: Vec<(usize, String)> = [(1, "key"), (4, "token"), (5, "env"), (5, "fs")]
        .into_iter()
        .map(|(l, n)| (l, n.to_owned()))
        .collect();
    assert_eq!(names, expected);
    assert_eq!(
        module_of(Path::new("src/key/pem.rs"), &[]).as_deref(),
        Some("key")
    );
    assert_eq!(
        module_of(Path::new("src/mint.rs"), &[]).as_deref(),
        Some("mint")
    );
    assert_eq!(module_of(Path::new("src/lib.rs"), &[]), None);
    let arena = module_of(Path::new("src/arena.rs"), &["arena".to_owned()]);
    assert_eq!(arena.as_deref(), Some("main"));
}
