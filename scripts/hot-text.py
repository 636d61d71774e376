#!/usr/bin/env python3
"""Writes link/hot-text.ld: the functions a `get` runs, gathered at the start of the text.

    scripts/hot-text.py BINARY... > link/hot-text.ld

Each BINARY is a static build of the helper with its symbols kept, for example

    CARGO_PROFILE_RELEASE_STRIP=false RUSTFLAGS="-C target-feature=+crt-static" \\
      cargo build --release --locked --target x86_64-unknown-linux-gnu
    CARGO_PROFILE_RELEASE_STRIP=false \\
      cargo build --release --locked --target x86_64-unknown-linux-musl

Why: a `get` runs a few hundred of the binary's functions, scattered over three megabytes of
text, and every 64 KiB of text it reaches costs a page fault (a quarter of a static `get` is page
faults). Gathered in one output section they take a third of the faults (27 to 9 with
static glibc). The kernel's single-stepping (ptrace) records every instruction a `get`
executes, so the list is complete and in the order the functions first run; nothing is
sampled. Run it again after a change to what `get` runs, or to a new toolchain.

The script names input sections by pattern, so it survives rebuilds: a Rust function by its
mangled path with the hash left open (`.text._ZN...17h*`), a C or assembly function (glibc,
musl, ring) by the archive member that holds it. A function renamed later simply drops out of
the hot section until the script is generated again. Needs Linux, Python 3, nm and readelf.
"""

import ctypes
import os
import re
import subprocess
import sys
import tempfile
from bisect import bisect_right

REQUEST = (
    b"capability[]=authtype\ncapability[]=state\nprotocol=https\n"
    b"host=acme.code.storage\npath=team/project-alpha.git\n\n"
)
PTRACE_TRACEME, PTRACE_SINGLESTEP, PTRACE_GETREGS = 0, 9, 12
# user_regs_struct on x86_64: 27 registers, rip the 17th.
REGS, RIP = 27, 16


def run(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def executed_addresses(binary, env):
    """Every instruction address `binary get` executes, each with the step it first ran at."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    stdin_read, stdin_write = os.pipe()
    os.write(stdin_write, REQUEST)
    os.close(stdin_write)
    pid = os.fork()
    if pid == 0:
        os.dup2(stdin_read, 0)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        libc.ptrace(PTRACE_TRACEME, 0, None, None)
        os.execve(binary, [binary, "get"], env)
    os.close(stdin_read)
    os.waitpid(pid, 0)
    regs = (ctypes.c_ulonglong * REGS)()
    first_seen = {}
    step = 0
    while True:
        libc.ptrace(PTRACE_GETREGS, pid, None, ctypes.byref(regs))
        first_seen.setdefault(regs[RIP], step)
        step += 1
        libc.ptrace(PTRACE_SINGLESTEP, pid, None, None)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            break
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        sys.exit(f"hot-text.py: {binary} get failed under the tracer (status {status})")
    return first_seen


def functions_in_order(binary, first_seen):
    """The binary's functions that ran, in the order they first ran."""
    headers = run("readelf", "-lhW", binary)
    if "INTERP" in headers:
        sys.exit(f"hot-text.py: {binary} is dynamically linked; give a static build")
    entry = int(re.search(r"Entry point address:\s+0x([0-9a-f]+)", headers).group(1), 16)
    symbols = []
    for line in run("nm", "--defined-only", binary).splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] in "tTwW":
            symbols.append((int(fields[0], 16), fields[2]))
    if not symbols:
        sys.exit(f"hot-text.py: {binary} has no symbols; build it with CARGO_PROFILE_RELEASE_STRIP=false")
    symbols.sort()
    starts = [address for address, _ in symbols]
    # The first instruction is the entry point, which tells where the kernel loaded the binary.
    base = min(first_seen, key=first_seen.get) - entry
    first = {}
    for address, step in first_seen.items():
        i = bisect_right(starts, address - base) - 1
        if i >= 0:
            name = symbols[i][1]
            first[name] = min(step, first.get(name, step))
    return sorted(first, key=first.get)


def archive_members(archives):
    """Which archive member defines each C or assembly function, archive by archive."""
    members = {}
    for archive in archives:
        for line in run("nm", "-A", "--defined-only", archive).splitlines():
            location, _, rest = line.rpartition(":")
            fields = rest.split()
            if len(fields) == 3 and fields[1] in "tTwWiI":
                _, _, member = location.rpartition(":")
                members.setdefault(fields[2], []).append((archive, member))
    return members


def archive_pattern(archive, member):
    """An input-section pattern for one member that holds across rebuilds and versions."""
    name = os.path.basename(archive)
    # ring's objects reach the linker inside ring's rlib (libring-HASH.rlib), not the archive its
    # build script made, and cc prefixes each member with a hash of its path.
    name = re.sub(r"^libring_core_.*\.a$", "libring*", name)
    member = re.sub(r"^[0-9a-f]{16}-", "*-", member)
    return f"*{name}:{member}(.text .text.*)"


def patterns(functions, members):
    """Input-section patterns for `functions`, in their order, each once."""
    seen = []
    for name in functions:
        legacy = re.fullmatch(r"(_ZN.*17h)[0-9a-f]{16}E", name)
        v0 = name.startswith("_R")
        if legacy or v0:
            if legacy:
                section = legacy.group(1) + "*"
            else:
                # A v0 name (the standard library's) has a hash per crate, `Cs<base-62>_` before
                # the crate's name, which differs between toolchains.
                section = re.sub(r"Cs[0-9A-Za-z]+_(?=[0-9])", "Cs*_", name)
            # LLVM puts a function it knows to be cold (`#[cold]`, such as a vector's growth)
            # in .text.unlikely.NAME.
            found = [f"*(.text.{section} .text.unlikely.{section})"]
        elif name == "_start":
            # The C runtime's entry point: crt1.o, rcrt1.o or Scrt1.o, by how the program links.
            found = ["*crt1.o(.text .text.*)"]
        elif name in ("frame_dummy", "register_tm_clones", "deregister_tm_clones", "__do_global_dtors_aux"):
            # The compiler's start-up and exit code, from crtbegin.o (crtbeginS.o, crtbeginT.o).
            found = ["*crtbegin*.o(.text .text.*)"]
        else:
            # A name more than one member of an archive defines is a file-local function (glibc
            # has a `free_mem` in dozens of files): which one ran is unknown, so none is moved.
            defined = members.get(name, [])
            archives = [a for a, _ in defined]
            found = [archive_pattern(a, m) for a, m in defined if archives.count(a) == 1]
            if not defined:
                # Unmangled and in no archive: a function Rust exports under its own name, such
                # as the `main` that calls Rust's runtime, in a section of its own.
                found = [f"*(.text.{name} .text.unlikely.{name})"]
        for pattern in found:
            if pattern not in seen:
                seen.append(pattern)
    return seen


def c_archives(binary):
    """The static C library `binary` was linked with (musl when its path names the musl
    target, else glibc), and ring's archive beside it."""
    if "-musl" in binary:
        sysroot = run("rustc", "--print", "sysroot").strip()
        archives = [os.path.join(sysroot, "lib/rustlib/x86_64-unknown-linux-musl/lib/self-contained/libc.a")]
    else:
        archives = [run("cc", "-print-file-name=libc.a").strip()]
    build = os.path.join(os.path.dirname(os.path.abspath(binary)), "build")
    for root, _, files in os.walk(build):
        archives += [os.path.join(root, f) for f in files if re.match(r"libring_core_.*\.a$", f)]
    missing = [a for a in archives if not os.path.isfile(a)]
    if missing:
        sys.exit(f"hot-text.py: {missing[0]} is missing; install the static C library")
    return archives


def main():
    binaries = sys.argv[1:]
    if not binaries or binaries[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    hot = []
    for binary in binaries:
        members = archive_members(c_archives(binary))
        with tempfile.TemporaryDirectory() as home:
            key = os.path.join(home, "acme.pem")
            config = os.path.join(home, "config.toml")
            env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            subprocess.run([binary, "keygen", "--org", "acme", "--out", key], env=env, check=True, capture_output=True)
            with open(config, "w") as f:
                f.write(f'subject = "hot-text"\n[org.acme]\nkey_file = "{key}"\n')
            env["CODESTORAGE_CONFIG"] = config
            functions = functions_in_order(binary, executed_addresses(binary, env))
        for pattern in patterns(functions, members):
            if pattern not in hot:
                hot.append(pattern)
    print("/* The functions an ES256 `get` runs, in the order they first run, gathered ahead of the")
    print("   rest of the text so that a `get` faults in a third as many pages of text. Generated")
    print("   by scripts/hot-text.py (which says how); build.rs passes it to the linker on x86_64")
    print("   Linux. A pattern that matches nothing costs nothing. */")
    print("SECTIONS")
    print("{")
    print("  .text.hot :")
    print("  {")
    for pattern in hot:
        print(f"    {pattern}")
    print("  }")
    print("}")
    print("INSERT BEFORE .text;")


if __name__ == "__main__":
    main()
