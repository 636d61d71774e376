#!/usr/bin/env bash
# Builds git-credential-codestorage and installs it where git can find it.
#
#   ./install.sh                  build a static binary (cargo build --release --locked), install
#                                 it to ~/.local/bin
#   ./install.sh --prefix DIR     install to DIR/bin instead (also: PREFIX=DIR ./install.sh)
#   ./install.sh --dynamic        build against the shared C library instead
#   ./install.sh --uninstall      remove the installed binary (config and keys are kept)
#   ./install.sh --demo           run scripts/demo.sh: the helper end to end against a local
#                                 Code Storage emulator, in a throwaway HOME
#
# On Linux the binary is linked statically: the musl target when rustup has it installed, else
# glibc with crt-static. A static `get` skips the dynamic loader and shared-library start-up,
# which are most of a dynamically linked helper's run time (docs/performance.md).
#
# Running it again is safe: an identical binary is left alone, a different one replaced.
# CODESTORAGE_INSTALL_BINARY=PATH installs that already-built binary instead of building
# (for packagers, and for the test suite, which must not rebuild in release mode).
set -euo pipefail

name=git-credential-codestorage
repo_root=$(cd "$(dirname "$0")" && pwd)

fail() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}

usage() {
  cat <<'EOF'
Usage: ./install.sh [--prefix DIR] [--dynamic] [--uninstall | --demo]

  --prefix DIR   install into DIR/bin (default: $PREFIX, else ~/.local)
  --dynamic      link against the shared C library (default on Linux: a static binary, which
                 starts faster; needs the static C library, e.g. Debian's libc6-dev)
  --uninstall    remove DIR/bin/git-credential-codestorage; your config and keys are kept
  --demo         run scripts/demo.sh (clone, push and clone again through the helper against a
                 local emulator, with no account and no network)
  -h, --help     show this help

Environment: CODESTORAGE_INSTALL_BINARY=PATH installs that binary instead of building one.
EOF
}

action=install
prefix=${PREFIX:-}
link=static
while [ $# -gt 0 ]; do
  case $1 in
    --prefix)
      [ $# -ge 2 ] && [ -n "$2" ] || fail "--prefix needs a directory, e.g. --prefix ~/.local"
      prefix=$2
      shift 2
      ;;
    --prefix=*)
      prefix=${1#--prefix=}
      [ -n "$prefix" ] || fail "--prefix needs a directory, e.g. --prefix ~/.local"
      shift
      ;;
    --dynamic) link=dynamic; shift ;;
    --uninstall) action=uninstall; shift ;;
    --demo) action=demo; shift ;;
    -h | --help) usage; exit 0 ;;
    *)
      printf 'install.sh: unknown option %s\n\n' "$1" >&2
      usage >&2
      exit 2
      ;;
  esac
done

if [ "$action" = demo ]; then
  demo=$repo_root/scripts/demo.sh
  [ -f "$demo" ] || fail "scripts/demo.sh is missing from $repo_root; it runs the end-to-end demo (get it with the rest of the repository)"
  exec bash "$demo"
fi

if [ -z "$prefix" ]; then
  [ -n "${HOME:-}" ] || fail "HOME is not set; pass --prefix DIR"
  prefix=$HOME/.local
fi
case $prefix in
  /*) ;;
  *) prefix=$PWD/$prefix ;;
esac
bindir=${prefix%/}/bin
target=$bindir/$name
# The man page (`man git-credential-codestorage`, `git credential-codestorage --help`) and the
# completions, where bash-completion, zsh and fish look under a prefix.
share=${prefix%/}/share
manpage=$share/man/man1/$name.1
bash_completion=$share/bash-completion/completions/$name
zsh_completion=$share/zsh/site-functions/_$name
fish_completion=$share/fish/vendor_completions.d/$name.fish

# Where the helper reads its config (config::default_path): $CODESTORAGE_CONFIG, else the
# platform's config directory.
config_path() {
  if [ -n "${CODESTORAGE_CONFIG:-}" ]; then
    printf '%s\n' "$CODESTORAGE_CONFIG"
  elif [ "$(uname -s)" = Darwin ] && [ -f "$HOME/Library/Application Support/codestorage/config.toml" ] &&
    [ ! -f "${XDG_CONFIG_HOME:-$HOME/.config}/codestorage/config.toml" ]; then
    printf '%s\n' "$HOME/Library/Application Support/codestorage/config.toml"
  else
    case ${XDG_CONFIG_HOME:-} in
      /*) printf '%s\n' "$XDG_CONFIG_HOME/codestorage/config.toml" ;;
      *) printf '%s\n' "$HOME/.config/codestorage/config.toml" ;;
    esac
  fi
}

if [ "$action" = uninstall ]; then
  for extra in "$manpage" "$bash_completion" "$zsh_completion" "$fish_completion"; do
    [ -e "$extra" ] && rm -f "$extra" && echo "removed $extra"
  done
  if [ -e "$target" ]; then
    rm -f "$target" || fail "cannot remove $target; check its directory's permissions"
    echo "removed $target"
  else
    echo "$target is not installed; nothing to remove"
  fi
  echo "kept your config ($(config_path)) and keys"
  if command -v git >/dev/null 2>&1; then
    routed=$(git config --global --get-regexp '^credential\..*\.helper$' 2>/dev/null | grep codestorage || true)
    if [ -n "$routed" ]; then
      echo "git's global config still routes hosts to the helper, and git will complain that it is missing:"
      printf '  %s\n' "$routed"
      # setup --remove would have taken them away with the binary still here; now by hand.
      # One line for every section (the wildcard and each exact host), so it can be pasted whole.
      commands=$(printf '%s\n' "$routed" | sed -n 's/^credential\.\(.*\)\.helper .*/\1/p' | sort -u |
        sed "s/.*/git config --global --remove-section 'credential.&'; git config --global --remove-section 'http.&'/" |
        paste -sd ';' - | sed 's/;/; /g; s/;  /; /g')
      echo "remove them: $commands"
      echo "(next time, run \`git-credential-codestorage setup --org ORG --remove\` before ./install.sh --uninstall: it removes both)"
    fi
  fi
  exit 0
fi

# Chooses how to build: sets cargo_args, rustflags, triple (empty: the host, no --target), kind
# and static_hint. An explicit --target keeps build scripts and proc-macros, which run on the
# build machine, out of the static link; RUSTFLAGS then applies to the target only.
plan_build() {
  local host musl libc
  cargo_args=(build --release --locked --bin "$name")
  rustflags=${RUSTFLAGS:-}
  triple=
  kind="a dynamically linked binary"
  static_hint=
  host=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
  if [ "$link" = dynamic ]; then
    return
  fi
  case $host in
    *-linux-musl*)
      triple=$host
      ;;
    *-linux-gnu*)
      musl=${host/-linux-gnu/-linux-musl}
      if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
        triple=$musl
      else
        libc=$(cc -print-file-name=libc.a 2>/dev/null || true)
        case $libc in
          /*)
            triple=$host
            rustflags="${rustflags:+$rustflags }-C target-feature=+crt-static"
            if command -v rustup >/dev/null 2>&1; then
              echo "note: a musl build starts faster still (about 0.45 of git's credential-store against 0.7 for glibc, docs/performance.md): rustup target add $musl, then run ./install.sh again"
            fi
            ;;
          *)
            echo "note: the static C library (libc.a) is not installed, so the binary will be linked dynamically and start more slowly; for a static one install it (Debian/Ubuntu: libc6-dev; Fedora: glibc-static) or add the musl target (rustup target add $musl), then run ./install.sh again"
            ;;
        esac
      fi
      ;;
    *)
      # macOS and the BSDs support no static libc; their dynamic start-up is what it is.
      ;;
  esac
  if [ -n "$triple" ]; then
    cargo_args+=(--target "$triple")
    kind="a static binary for $triple"
    static_hint="; to link dynamically instead, run ./install.sh --dynamic"
  fi
  plan_musl_cc
}

# ring's build script compiles C for the target and, for a musl target built on a glibc host,
# looks for x86_64-linux-musl-gcc, which only musl-tools provides. Its C needs no C library, so
# the system compiler builds it: name it (musl-gcc, the wrapper, where installed) unless the
# user already has. Sets cc_var and cc_value (empty: nothing to set).
plan_musl_cc() {
  local var
  cc_var=
  cc_value=
  case $triple in
    *-linux-musl*) ;;
    *) return ;;
  esac
  var=CC_$(printf '%s' "$triple" | tr '-' '_')
  if [ -n "${!var:-}" ] || [ -n "${CC:-}" ] || command -v "${triple%%-*}-linux-musl-gcc" >/dev/null 2>&1; then
    return
  fi
  cc_var=$var
  if command -v musl-gcc >/dev/null 2>&1; then
    cc_value=musl-gcc
  else
    cc_value=cc
  fi
}

# The build command as a user would type it.
describe_build() {
  printf '%s' "${cc_var:+$cc_var=$cc_value }${rustflags:+RUSTFLAGS=\"$rustflags\" }cargo ${cargo_args[*]}"
}

if [ -n "${CODESTORAGE_INSTALL_BINARY:-}" ]; then
  built=$CODESTORAGE_INSTALL_BINARY
  [ -f "$built" ] && [ -x "$built" ] || fail "CODESTORAGE_INSTALL_BINARY=$built is not an executable file"
else
  command -v cargo >/dev/null 2>&1 \
    || fail "cargo is not installed; install the Rust toolchain (https://rustup.rs), then run ./install.sh again"
  command -v cc >/dev/null 2>&1 \
    || fail "no C compiler (cc) found; ring, the cryptography library, needs one: install gcc or clang (Debian/Ubuntu: apt install build-essential), then run ./install.sh again"
  plan_build
  echo "building $kind: $(describe_build)"
  echo "(about 4 minutes on 2 cores the first time, seconds after that; cargo's progress follows)"
  (
    cd "$repo_root"
    if [ -n "$rustflags" ]; then export RUSTFLAGS=$rustflags; fi
    if [ -n "$cc_var" ]; then export "$cc_var=$cc_value"; fi
    # cargo shows its progress bar only on a terminal: elsewhere (a CI log, a pipe) it prints one
    # line per crate, so the minutes are never silent.
    cargo "${cargo_args[@]}"
  ) \
    || fail "the build failed; see cargo's messages above${static_hint}"
  target_dir=${CARGO_TARGET_DIR:-target}
  case $target_dir in
    /*) ;;
    *) target_dir=$repo_root/$target_dir ;;
  esac
  built=$target_dir/${triple:+$triple/}release/$name
  [ -x "$built" ] || fail "the build reported success but $built is missing"
fi

mkdir -p "$bindir" || fail "cannot create $bindir; choose another directory with --prefix DIR"
[ -w "$bindir" ] || fail "cannot write to $bindir; choose another directory with --prefix DIR"

if [ -f "$target" ] && cmp -s "$built" "$target"; then
  echo "$target is up to date"
else
  # Copy beside the target and rename over it: a running helper keeps its old file intact.
  staged=$(mktemp "$bindir/.$name.XXXXXX") || fail "cannot write to $bindir"
  trap 'rm -f "$staged"' EXIT
  cp "$built" "$staged" || fail "cannot copy $built to $bindir"
  chmod 755 "$staged"
  mv -f "$staged" "$target" || fail "cannot replace $target"
  trap - EXIT
  echo "installed $target"
fi
"$target" --version >/dev/null 2>&1 || fail "$target does not run on this machine; rebuild it here without CODESTORAGE_INSTALL_BINARY"

# Written by the installed binary itself, from its own command definitions: they never drift.
install_generated() { # FILE COMMAND...
  file=$1
  shift
  mkdir -p "$(dirname "$file")" || fail "cannot create $(dirname "$file"); choose another directory with --prefix DIR"
  "$target" "$@" >"$file.tmp" && mv -f "$file.tmp" "$file" || fail "cannot write $file"
  chmod 644 "$file"
}
install_generated "$manpage" man
install_generated "$bash_completion" completions bash
install_generated "$zsh_completion" completions zsh
install_generated "$fish_completion" completions fish
echo "installed the man page ($manpage) and bash, zsh and fish completions under $share"

command=$name
case ":${PATH:-}:" in
  *":$bindir:"* | *":$bindir/:"*)
    found=$(command -v "$name" || true)
    if [ -n "$found" ] && [ "$found" != "$target" ]; then
      echo "note: $found comes first on your PATH, so git runs that one; remove it or put $bindir first"
    fi
    ;;
  *)
    command=$target
    echo
    echo "$bindir is not on your PATH, where git looks for credential helpers. Add it, e.g.:"
    echo "  echo 'export PATH=\"$bindir:\$PATH\"' >> ~/.profile    (or ~/.bashrc, ~/.zshrc)"
    echo "and open a new shell. (Until then, setup writes the helper's full path into git's config.)"
    ;;
esac

config=$(config_path)
echo
if [ -f "$config" ]; then
  echo "config found at $config; check everything with:"
  echo "  $command doctor"
else
  echo "next, with the name of your Code Storage organisation (ORG):"
  echo "  no key yet:  $command keygen --org ORG     (then register the printed public key)"
  echo "  then:        $command setup --org ORG --key-file PATH_TO_PRIVATE_KEY.pem"
fi
