//! The token decoder behind `inspect`: any text, pasted as a token, a Bearer header or a URL.
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::token_decoder(data));
