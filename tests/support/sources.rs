//! The helper's own source files, for the tests that read the code itself (the layering and the
//! docs-sync tests).

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, sorted, leaving out `src/bin/`: the emulator is a test server
/// of its own crate, not the helper.
pub fn helper_sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.ends_with("src/bin") {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    assert!(out.len() > 20, "too few sources found: {}", out.len());
    out
}
