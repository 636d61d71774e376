//! git's credential request parser: never panics, and what parses writes back to itself.
#![no_main]

use git_credential_codestorage::protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = protocol::parse(data) {
        let mut written = Vec::new();
        request.write_to(&mut written).unwrap();
        assert_eq!(protocol::parse(&written).unwrap(), request);
    }
});
