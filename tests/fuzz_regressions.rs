//! Inputs the fuzzers (fuzz/) or the property tests found, or that sit at the edge of what the
//! parsers accept, replayed on every `cargo test` through the fuzz targets' own checks
//! (tests/support/fuzz_checks.rs, which the targets include). When a fuzzer finds a crash, copy
//! `fuzz/artifacts/TARGET/crash-*` to `tests/fuzz-regressions/TARGET/` under a name that says
//! what it is (see docs/fuzzing.md).

use crate::support;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

use git_credential_codestorage::protocol::{self, Response};
use git_credential_codestorage::token;
use support::fuzz_checks as checks;

/// Feeds every file kept for `target`, in name order, to `check`; a failure names the file.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no inputs in {}", dir.display());
    for path in paths {
        let data = std::fs::read(&path).unwrap();
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            eprintln!("the failing input: {}", path.display());
            resume_unwind(panic);
        }
    }
}

#[test]
fn request_parser() {
    replay("request_parser", checks::request_parser);
}

#[test]
fn request_handler() {
    replay("request_handler", checks::request_handler);
}

#[test]
fn config_parser() {
    replay("config_parser", checks::config_parser);
}

#[test]
fn key_loader() {
    replay("key_loader", checks::key_loader);
}

#[test]
fn token_decoder() {
    replay("token_decoder", checks::token_decoder);
}

/// The handler's checks on a token run only when `get` signs: make sure the fixture does sign
/// for each kind of host it serves, so those checks are not silently skipped.
#[test]
fn the_handler_check_signs_for_every_kind_of_host_it_serves() {
    for (text, iss, repo) in [
        (
            "capability[]=authtype\nprotocol=https\nhost=acme.code.storage\npath=team/x.git\n",
            "acme",
            "team/x",
        ),
        (
            "protocol=https\nhost=git.acme.dev:8443\npath=mirrors/a+ephemeral.git\n",
            "acme",
            "mirrors/a",
        ),
        (
            "protocol=http\nhost=localhost:8080\npath=x.git\n",
            "acme",
            "x",
        ),
        (
            "protocol=https\nhost=beta.code.storage\npath=a/b/c.git\n",
            "beta",
            "a/b/c",
        ),
    ] {
        let request = protocol::parse(text.as_bytes()).unwrap();
        let response = checks::get(&request, false);
        let Response::Credential { password, .. } = response else {
            panic!("no token for {text:?}: {response:?}");
        };
        let claims = token::decode_unverified(password.expose())
            .unwrap()
            .claims
            .unwrap();
        assert_eq!((claims.iss.as_str(), claims.repo.as_str()), (iss, repo));
    }
}

#[test]
fn clean_repository_ids_are_what_the_handler_check_says() {
    for clean in ["x", "team/x", "a/b/c", "mirrors/a+b", "A-z_0.9~"] {
        assert!(checks::is_clean_repo_id(clean), "{clean:?}");
    }
    for dirty in [
        "", "/x", "x/", "a//b", ".", "a/./b", "../x", "a/..", "a b", "a\\b", "a%2e", "a?b", "a#b",
        "é", "a\u{7f}",
    ] {
        assert!(!checks::is_clean_repo_id(dirty), "{dirty:?}");
    }
}
