//! The key loader: any bytes as a PEM file, and whatever loads is handed to ring to sign.
//! Mutated base64 rarely stays valid, so an input whose first byte is 0 to 5 is the DER inside a
//! PEM block of the tag it selects (`PRIVATE KEY`, `EC PRIVATE KEY`, ...): that is where the
//! hand-written DER reader works. `fuzz/seed.sh` seeds both kinds from tests/fixtures.
#![no_main]

#[path = "../../tests/support/fuzz_checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::key_loader(data));
