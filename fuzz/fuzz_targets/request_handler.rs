//! The whole `get` and `erase` decision on any request: parsing, host and repository checks,
//! settings and signing. Never panics, and signs only for a host that is ours and a clean
//! repository ID. (A multi-byte character before `.code.storage` once panicked here.)
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::request_handler(data));
