#!/usr/bin/env bash
# Runs the allocator's unit tests (src/arena.rs, the program's only unsafe code) under Miri,
# which checks every memory access, alignment, provenance and data race they make.
#
#   scripts/miri-arena.sh
#
# Installs the nightly toolchain with Miri when it is missing (rustup's download). The arena needs
# nothing but std, so it is built alone as a crate of its own in a temporary directory: Miri then
# interprets three tests instead of building the helper's dependencies first.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
fail() {
  printf 'miri-arena: %s\n' "$*" >&2
  exit 1
}

command -v rustup >/dev/null 2>&1 || fail "rustup is not installed; install the Rust toolchain (https://rustup.rs), then run this again"
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "miri-arena: installing the nightly toolchain with Miri"
  rustup toolchain install nightly --profile minimal --component miri \
    || fail "cannot install nightly with Miri; check the network, or run: rustup toolchain install nightly --component miri"
fi

crate=$(mktemp -d)
trap 'rm -rf "$crate"' EXIT
cat > "$crate/Cargo.toml" <<TOML
[package]
name = "arena"
version = "0.0.0"
edition = "2024"
publish = false

[lib]
path = "$repo_root/src/arena.rs"

[workspace]
TOML
# A lockfile with no dependencies, so that --locked holds.
cargo +nightly generate-lockfile --offline --manifest-path "$crate/Cargo.toml" 2>/dev/null || true
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo_root/target}/miri-arena \
  cargo +nightly miri test --locked --manifest-path "$crate/Cargo.toml"
