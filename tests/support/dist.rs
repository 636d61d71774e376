//! For the distribution tests (install.sh, cargo install, the Python wheel): the toolchain's
//! environment for a nested build, a target directory they share, and an ELF reader that tells a
//! static executable from a dynamic one without trusting `file` or `ldd`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target directory the nested release builds share with each other and with
/// `cargo bench --bench whole_process`: built once, then reused by every run.
pub fn shared_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("dist")
}

/// Lets `command` run cargo and rustup under a throwaway HOME (both find their homes through HOME
/// unless told, and a fresh one would have no toolchain and an empty registry cache), building
/// into the shared target directory.
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

/// Reads the program headers of a little-endian ELF64 executable.
pub fn linking(path: &Path) -> Linking {
    let elf = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(&elf[..4], b"\x7fELF", "{} is not ELF", path.display());
    assert_eq!((elf[4], elf[5]), (2, 1), "only ELF64 little-endian is read");
    let u16_at = |at: usize| usize::from(u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()));
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    let mut result = Linking {
        interpreter: None,
        needed: 0,
    };
    for header in (0..phnum).map(|i| phoff + i * phentsize) {
        let (offset, size) = (u64_at(header + 8) as usize, u64_at(header + 0x20) as usize);
        let contents = &elf[offset..offset + size];
        match u32_at(header) {
            // PT_INTERP: a NUL-terminated path.
            3 => {
                let path = contents.split(|&b| b == 0).next().unwrap_or_default();
                result.interpreter = Some(String::from_utf8_lossy(path).into_owned());
            }
            // PT_DYNAMIC: (tag, value) pairs until DT_NULL; DT_NEEDED is tag 1. A static-pie
            // has this segment too, for its own relocations, but needs no library.
            2 => {
                for entry in contents.chunks_exact(16) {
                    match u64::from_le_bytes(entry[..8].try_into().unwrap()) {
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

/// A section of an ELF64 executable: its name, address and size.
#[derive(Debug)]
pub struct Section {
    /// e.g. `.text`.
    pub name: String,
    /// Where it is loaded (before relocation of a position-independent executable).
    pub address: u64,
    /// Its size in memory.
    pub size: u64,
}

impl Section {
    /// True when `address` lies in this section.
    pub fn holds(&self, address: u64) -> bool {
        (self.address..self.address + self.size).contains(&address)
    }
}

/// An executable's section headers, and its symbols (name, address) when it was not stripped.
pub fn sections_and_symbols(path: &Path) -> (Vec<Section>, Vec<(String, u64)>) {
    let elf = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!((&elf[..4], elf[4], elf[5]), (&b"\x7fELF"[..], 2, 1));
    let u16_at = |at: usize| usize::from(u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()));
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(0x28) as usize,
        u16_at(0x3a),
        u16_at(0x3c),
        u16_at(0x3e),
    );
    // Each header: name offset, type, flags, address, file offset, size, link, ...
    let header = |i: usize| shoff + i * shentsize;
    let string = |table: usize, at: usize| {
        let start = u64_at(header(table) + 0x18) as usize + at;
        let len = elf[start..].iter().position(|&b| b == 0).unwrap();
        String::from_utf8_lossy(&elf[start..start + len]).into_owned()
    };
    let mut sections = Vec::new();
    let mut symbols = Vec::new();
    for i in 0..shnum {
        let h = header(i);
        sections.push(Section {
            name: string(shstrndx, u32_at(h) as usize),
            address: u64_at(h + 0x10),
            size: u64_at(h + 0x20),
        });
        // SHT_SYMTAB: 24-byte entries (name, info, other, section, value, size), names in the
        // string table its sh_link names.
        if u32_at(h + 4) == 2 {
            let (offset, size, strings) = (
                u64_at(h + 0x18) as usize,
                u64_at(h + 0x20) as usize,
                u32_at(h + 0x28) as usize,
            );
            for entry in elf[offset..offset + size].chunks_exact(24) {
                let name = u32::from_le_bytes(entry[..4].try_into().unwrap()) as usize;
                let value = u64::from_le_bytes(entry[8..16].try_into().unwrap());
                symbols.push((string(strings, name), value));
            }
        }
    }
    (sections, symbols)
}

/// Fails the test unless the functions a `get` runs (link/hot-text.ld, passed by build.rs on
/// x86_64 Linux) were gathered into `.text.hot`, ahead of the rest of the text.
pub fn assert_hot_text_first(path: &Path) {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return;
    }
    let (sections, _) = sections_and_symbols(path);
    let elf = std::fs::read(path).unwrap();
    let entry = u64::from_le_bytes(elf[0x18..0x20].try_into().unwrap());
    let find = |name: &str| {
        sections
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{} has no {name} section", path.display()))
    };
    let (hot, text) = (find(".text.hot"), find(".text"));
    assert!(hot.size > 64 * 1024, "{hot:?} is nearly empty");
    assert!(
        hot.address + hot.size <= text.address,
        "{hot:?} is not before {text:?}"
    );
    // The first function to run, the C runtime's `_start`, is the first one gathered.
    assert!(
        hot.holds(entry),
        "the entry point {entry:#x} is not in {hot:?}"
    );
}
