//! For the distribution tests (install.sh, cargo install, the Python wheel): the toolchain's
//! environment for a nested build, a target directory they share, and an ELF reader that tells a
//! static executable from a dynamic one without trusting `file` or `ldd`.

// install.rs and wheel.rs each use part of this.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target directory the nested release builds share with each other: built once per test
/// run, then reused by every route that builds alike (install.sh, README's `cargo install`, the
/// release archive). Not the benchmarks' (benches/whole_process.rs): those need the real profile.
pub fn shared_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("dist-tests")
}

/// The release profile's settings a nested build overrides. These tests check what a route
/// builds and how it links (static, installed where it says, signing), never how fast the code
/// runs; fat LTO over one codegen unit at full optimisation made each nested build minutes of a
/// 2-core machine, and the wheel's and the installs' builds two of the slowest tests.
const QUICK_RELEASE: &[(&str, &str)] = &[
    ("CARGO_PROFILE_RELEASE_LTO", "off"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
    ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1"),
];

/// Lets `command` run cargo and rustup under a throwaway HOME (both find their homes through HOME
/// unless told, and a fresh one would have no toolchain and an empty registry cache), building
/// into the shared target directory with the quick release settings ([`QUICK_RELEASE`]).
pub fn toolchain_env(command: &mut Command) {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    for (var, default) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
        let dir = std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)));
        if let Some(dir) = dir {
            command.env(var, dir);
        }
    }
    // The developer's own flags would change what is built and what install.sh reports.
    command
        .env("CARGO_TARGET_DIR", shared_target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    command.envs(QUICK_RELEASE.iter().copied());
}

/// The host's target triple, as rustc reports it.
pub fn host_triple() -> String {
    let output = Command::new("rustc").arg("-vV").output().unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

/// What an executable needs from the dynamic loader.
#[derive(Debug, PartialEq, Eq)]
pub struct Linking {
    /// The program interpreter (PT_INTERP), e.g. `/lib64/ld-linux-x86-64.so.2`.
    pub interpreter: Option<String>,
    /// How many shared libraries it names (DT_NEEDED entries).
    pub needed: usize,
}

impl Linking {
    /// True when the kernel can start it with no loader and no shared library.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed == 0
    }
}

/// A little-endian ELF64 file, read whole once; its fields are read by offset.
struct Elf(Vec<u8>);

impl Elf {
    fn read(path: &Path) -> Self {
        let elf = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert_eq!(&elf[..4], b"\x7fELF", "{} is not ELF", path.display());
        assert_eq!((elf[4], elf[5]), (2, 1), "only ELF64 little-endian is read");
        Self(elf)
    }

    fn u16(&self, at: usize) -> usize {
        usize::from(u16::from_le_bytes(self.0[at..at + 2].try_into().unwrap()))
    }

    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.0[at..at + 4].try_into().unwrap())
    }

    fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + 8].try_into().unwrap())
    }

    /// The NUL-terminated string at `at`.
    fn string(&self, at: usize) -> String {
        let len = self.0[at..].iter().position(|&b| b == 0).unwrap();
        String::from_utf8_lossy(&self.0[at..at + len]).into_owned()
    }
}

/// Reads the program headers of a little-endian ELF64 executable.
pub fn linking(path: &Path) -> Linking {
    let elf = Elf::read(path);
    let (phoff, phentsize, phnum) = (elf.u64(0x20) as usize, elf.u16(0x36), elf.u16(0x38));
    let mut result = Linking {
        interpreter: None,
        needed: 0,
    };
    for header in (0..phnum).map(|i| phoff + i * phentsize) {
        let (offset, size) = (
            elf.u64(header + 8) as usize,
            elf.u64(header + 0x20) as usize,
        );
        match elf.u32(header) {
            // PT_INTERP: a NUL-terminated path.
            3 => result.interpreter = Some(elf.string(offset)),
            // PT_DYNAMIC: (tag, value) pairs until DT_NULL; DT_NEEDED is tag 1. A static-pie
            // has this segment too, for its own relocations, but needs no library.
            2 => {
                for entry in (offset..offset + size).step_by(16) {
                    match elf.u64(entry) {
                        0 => break,
                        1 => result.needed += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    result
}

/// Fails the test unless `path` is a static executable, by the ELF headers and by `file(1)`.
pub fn assert_static(path: &Path) {
    let linking = linking(path);
    assert!(
        linking.is_static(),
        "{} is linked dynamically: {linking:?}",
        path.display()
    );
    // file(1) as a second, independent reader, where the machine has it.
    if let Ok(output) = Command::new("file").arg("-b").arg(path).output() {
        let said = String::from_utf8_lossy(&output.stdout);
        assert!(
            said.contains("statically linked") || said.contains("static-pie linked"),
            "file(1) says {}: {said}",
            path.display()
        );
    }
}
