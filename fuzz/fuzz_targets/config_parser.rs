//! The config file parser and validator: never panics on any text, and what it refuses points
//! at a line.
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config_parser(data));
