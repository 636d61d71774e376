#!/usr/bin/env bash
# A newcomer's first run: the helper end to end against a local Code Storage emulator, with no
# account and no network. Builds both binaries, makes a throwaway key, starts the emulator on
# loopback, then clone -> commit -> push -> fresh clone through the helper, and cleans up.
#
#   scripts/demo.sh            (or ./install.sh --demo)
#
# Everything happens in a temporary directory with its own HOME and git config: your own
# ~/.gitconfig, keys and config file are never read or touched.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }

command -v git >/dev/null || fail "git is not installed; install git and run the demo again"
[ -n "${CODESTORAGE_DEMO_BIN_DIR:-}" ] || command -v cargo >/dev/null || fail "cargo is not installed; install the Rust toolchain (https://rustup.rs) and run the demo again"

# CODESTORAGE_DEMO_BIN_DIR: a directory that already holds both binaries (the tests use it, so
# that they need not build a release); otherwise the demo builds them.
if [ -n "${CODESTORAGE_DEMO_BIN_DIR:-}" ]; then
  bin=$CODESTORAGE_DEMO_BIN_DIR
  for b in git-credential-codestorage codestorage-emulator; do
    [ -x "$bin/$b" ] || fail "CODESTORAGE_DEMO_BIN_DIR=$bin holds no executable $b"
  done
else
  step "Building git-credential-codestorage and codestorage-emulator (cargo build --release --locked --features emulator)"
  echo "(about 4 minutes on 2 cores the first time, seconds after that; cargo's progress follows)"
  (cd "$repo_root" && cargo build --release --locked --features emulator) \
    || fail "the build failed; see the cargo output above"
  bin="$repo_root/target/release"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/codestorage-demo.XXXXXX")
emulator_pid=
cleanup() {
  local status=$?
  if [ -n "$emulator_pid" ]; then
    kill "$emulator_pid" 2>/dev/null || true
    wait "$emulator_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A private world: its own HOME, git config and helper config.
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config"
export GIT_CONFIG_GLOBAL="$HOME/.gitconfig" GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
export PATH="$bin:$PATH"
unset CODESTORAGE_CONFIG CODESTORAGE_PRIVATE_KEY CODESTORAGE_PRIVATE_KEY_FILE PIERRE_PRIVATE_KEY PIERRE_PRIVATE_KEY_FILE
mkdir -p "$HOME"
git config --global user.name "Demo" && git config --global user.email "demo@example.invalid"
git config --global init.defaultBranch main

step "Making a throwaway signing key for organisation 'demo' (git-credential-codestorage keygen)"
# (keygen's advice on stderr, where to register the key, is for real organisations.)
git-credential-codestorage keygen --org demo --out "$work/demo.pem" > "$work/demo.pub.pem" 2>/dev/null
cat "$work/demo.pub.pem"

step "Starting the emulator with that public key registered (codestorage-emulator)"
mkfifo "$work/url"
codestorage-emulator --root "$work/repos" --ca-out "$work/ca.pem" \
  --org "demo=$work/demo.pub.pem" --create-on-push >"$work/url" 2>"$work/emulator.log" &
emulator_pid=$!
read -r base_url <"$work/url" || fail "the emulator did not start; its log: $(cat "$work/emulator.log")"
host=${base_url#https://}
echo "emulator at $base_url (its decisions are logged below)"
# The emulator's certificate is made at start; git trusts it through this variable alone.
export GIT_SSL_CAINFO="$work/ca.pem"

step "Configuring git and the helper for $host (git-credential-codestorage setup)"
git-credential-codestorage setup --org demo --key-file "$work/demo.pem" --host "$host"
echo "--- ~/.gitconfig"; cat "$GIT_CONFIG_GLOBAL"
echo "--- ~/.config/codestorage/config.toml"; cat "$XDG_CONFIG_HOME/codestorage/config.toml"

step "Committing in a new repository and pushing it (the emulator creates team/hello on push)"
git init --quiet "$work/hello"
cd "$work/hello"
echo "Hello from the git-credential-codestorage demo" > README.md
git add README.md && git commit --quiet -m "First commit"
git remote add origin "$base_url/team/hello.git"
git push origin main

step "Cloning it fresh: no token in the URL, none on disk"
git clone "$base_url/team/hello.git" "$work/fresh"
git -C "$work/fresh" log --oneline
git -C "$work/fresh" remote get-url origin

step "What a token for that repository says (git-credential-codestorage inspect, signature checked)"
git-credential-codestorage token "$base_url/team/hello.git" \
  | git-credential-codestorage inspect --key "$work/demo.pub.pem" -

step "What the emulator decided, request by request"
cat "$work/emulator.log"

step "Done: everything above lived in $work and is removed now"
echo "demo: ok"
