#!/usr/bin/env bash
# Type-checks the crate, its tests and its benches for macOS and Windows from Linux:
#
#   scripts/check-targets.sh [TARGET...]
#
# Defaults to x86_64-apple-darwin and x86_64-pc-windows-gnu. Installs each target's standard
# library with rustup when it is missing. No cross C compiler is needed: `cargo check` never
# links, so ring's C and assembly are handed to a stand-in compiler that writes empty objects.
# That proves the Rust compiles (every `cfg` branch of the platform code); it runs nothing.
# Uses its own target directory (target/check-targets) so the host's builds stay warm.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-apple-darwin x86_64-pc-windows-gnu)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# cc-rs asks the compiler which family it is (-E on a probe file) and whether it is MSVC (-?):
# answer "clang", refuse -?, and leave an empty object wherever -o points.
cat >"$work/cc" <<'EOF'
#!/bin/sh
case " $* " in
  *" -E "*) echo clang; exit 0 ;;
  *" -? "*) exit 1 ;;
esac
out=""
while [ $# -gt 0 ]; do
  case "$1" in -o) out="$2"; shift ;; -o*) out="${1#-o}" ;; esac
  shift
done
[ -z "$out" ] || : >"$out"
EOF
chmod +x "$work/cc"

installed=$(rustup target list --installed)
for target in "${targets[@]}"; do
  if ! grep -qx "$target" <<<"$installed"; then
    rustup target add "$target"
  fi
  var=${target//-/_}
  echo "== cargo check --target $target --all-targets --all-features"
  env "CC_$var=$work/cc" "AR_$var=ar" CARGO_TARGET_DIR="$repo_root/target/check-targets" \
    cargo check --manifest-path "$repo_root/Cargo.toml" --locked --target "$target" \
    --all-targets --all-features --keep-going
done
