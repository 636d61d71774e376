//! Gathers the functions a `get` runs at the start of the helper's text on x86_64 Linux.
//!
//! link/hot-text.ld (made by scripts/hot-text.py from a traced `get`) names them; placed together
//! they take a third of the page faults on text they take scattered over the whole of it, and a
//! static `get` a tenth less time (docs/performance.md). Only the helper's binary gets it: the
//! emulator and the whole-program tests are linked as usual.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=link/hot-text.ld");
    let target_is = |key: &str, value: &str| env::var(key).is_ok_and(|v| v == value);
    if !target_is("CARGO_CFG_TARGET_OS", "linux") || !target_is("CARGO_CFG_TARGET_ARCH", "x86_64") {
        return;
    }
    // lld and GNU ld take a script that INSERTs a section into their default layout; mold and gold
    // do not, so a build that chose one of them links as before.
    let rustflags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if rustflags.contains("mold") || rustflags.contains("gold") {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("link/hot-text.ld");
    // `-Wl,` splits its argument at commas, so a path with one cannot be passed through it.
    match script.to_str() {
        Some(path) if script.is_file() && !path.contains(',') => {
            println!("cargo::rustc-link-arg-bin=git-credential-codestorage=-Wl,-T,{path}");
        }
        _ => {}
    }
}
