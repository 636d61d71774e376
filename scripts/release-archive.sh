#!/usr/bin/env bash
# Makes a release archive of the helper for one target, in the layout Cargo.toml's
# [package.metadata.binstall] describes, so that `cargo binstall git-credential-codestorage`
# can install it once releases are published:
#
#   git-credential-codestorage-<target>-v<version>.tar.gz
#     git-credential-codestorage-<target>-v<version>/
#       git-credential-codestorage    (static on Linux, as install.sh builds it)
#       README.md LICENSE-MIT LICENSE-APACHE CHANGELOG.md
#
#   scripts/release-archive.sh [TARGET [OUT_DIR]]
#
# TARGET defaults to the host's triple, OUT_DIR to target/release-archives. A sha256 file is
# written beside the archive. CARGO_TARGET_DIR is honoured.
set -euo pipefail

name=git-credential-codestorage
repo_root=$(cd "$(dirname "$0")/.." && pwd)
fail() {
  printf 'release-archive: %s\n' "$*" >&2
  exit 1
}

command -v cargo >/dev/null 2>&1 || fail "cargo is not installed; install the Rust toolchain, then run this again"
host=$(rustc -vV | sed -n 's/^host: //p')
triple=${1:-$host}
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in
  /*) ;;
  *) target_dir=$repo_root/$target_dir ;;
esac
out=${2:-$target_dir/release-archives}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo_root/Cargo.toml" | head -n 1)
[ -n "$version" ] || fail "cannot read the package version from Cargo.toml"

# The same static link as install.sh: crt-static for glibc targets (an explicit --target keeps it
# away from build scripts and proc-macros), musl is static already.
rustflags=${RUSTFLAGS:-}
case $triple in
  *-linux-gnu*) rustflags="${rustflags:+$rustflags }-C target-feature=+crt-static" ;;
esac
echo "building $name $version for $triple"
(
  cd "$repo_root"
  if [ -n "$rustflags" ]; then export RUSTFLAGS=$rustflags; fi
  cargo build --release --locked --bin "$name" --target "$triple"
) || fail "the build for $triple failed; see cargo's messages above (is the target installed? rustup target add $triple)"

case $triple in
  *-windows-*) ext=.exe ;;
  *) ext= ;;
esac
stem=$name-$triple-v$version
mkdir -p "$out"
out=$(cd "$out" && pwd)
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir "$staging/$stem"
cp "$target_dir/$triple/release/$name$ext" "$staging/$stem/"
for file in README.md LICENSE-MIT LICENSE-APACHE CHANGELOG.md; do
  cp "$repo_root/$file" "$staging/$stem/"
done
# With GNU tar: sorted names, fixed owner and times, so that the same inputs give the same
# archive. Other tars make an ordinary one.
if tar --version 2>/dev/null | grep -q 'GNU tar'; then
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$staging" -cf - "$stem"
else
  tar -C "$staging" -cf - "$stem"
fi | gzip -n -9 > "$out/$stem.tar.gz"
(cd "$out" && sha256sum "$stem.tar.gz" > "$stem.tar.gz.sha256")
echo "$out/$stem.tar.gz"
