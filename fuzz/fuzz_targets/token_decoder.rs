//! The token decoder behind `inspect`: any text, pasted as a token, a Bearer header or a URL.
#![no_main]

use git_credential_codestorage::inspect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(token) = inspect::extract_token(text)
    {
        let _ = inspect::inspect(&token, None, 1_800_000_000);
    }
});
