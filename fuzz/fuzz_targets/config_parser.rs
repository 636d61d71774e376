//! The config file parser and validator: never panics on any text.
#![no_main]

use std::path::Path;

use git_credential_codestorage::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = config::parse(text, Path::new("/fuzz/config.toml"));
    }
});
