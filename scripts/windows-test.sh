#!/usr/bin/env bash
# Runs the Windows build for real, under Wine, on Debian or Ubuntu x86_64:
#
#   scripts/windows-test.sh
#
# 1. Installs what it needs when missing: gcc-mingw-w64-x86-64, wine64 and openssl (apt-get),
#    the x86_64-pc-windows-gnu standard library (rustup).
# 2. Lints the Windows build (clippy, warnings are errors), then runs the library's unit tests,
#    cross-built for x86_64-pc-windows-gnu, under Wine.
# 3. Runs the real windows-gnu binary, installed as C:\Program Files\codestorage\*.exe in a fresh
#    Wine prefix, through keygen, setup, get (asked by git), token and doctor, and checks: the
#    config file is %APPDATA%\codestorage\config.toml; a key file's Unix mode is not checked
#    (Windows has none); setup's helper line quotes the path with a space as a POSIX shell
#    snippet, which git runs as written; the tokens verify with openssl.
#
# Two stand-ins, both test scaffolding only, built here with mingw from scripts/windows/:
# - bcryptprimitives.dll: Rust 1.78+ programs import ProcessPrng from it; Windows 10 and later
#   have it, Debian 12's Wine (8.0) does not (Wine 9 does). The stand-in supplies that one
#   function from RtlGenRandom, which Wine 8 has, and goes into the Wine prefix's system32.
# - git.exe: Git for Windows does not run here, so `git config`, which setup and doctor run, goes
#   to the Linux git through Wine's Unix spawn. The helper line setup writes is then run by the
#   Linux git with its POSIX sh, the same form Git for Windows' sh runs.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
target=x86_64-pc-windows-gnu
started=$(date +%s)

say() { printf '== %s\n' "$*"; }
fail() {
  printf 'windows-test: FAIL: %s\n' "$*" >&2
  exit 1
}

install_tools() {
  local wanted=()
  command -v x86_64-w64-mingw32-gcc >/dev/null || wanted+=(gcc-mingw-w64-x86-64)
  [ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null || wanted+=(wine64)
  command -v openssl >/dev/null || wanted+=(openssl)
  if [ ${#wanted[@]} -gt 0 ]; then
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    say "apt-get install ${wanted[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
      "${wanted[@]}"
  fi
  if ! rustup target list --installed | grep -qx "$target"; then
    say "rustup target add $target"
    rustup target add "$target"
  fi
}

install_tools
wine=/usr/lib/wine/wine64
[ -x "$wine" ] || wine=$(command -v wine64)
work=$(mktemp -d)
trap '"$(dirname "$wine")/wineserver" -k >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export WINEPREFIX="$work/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="winemenubuilder.exe=d"
# The Linux side of every git config command below: one global file, no system file.
export GIT_CONFIG_GLOBAL="$work/gitconfig" GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0

say "a fresh Wine prefix with the ProcessPrng stand-in ($("$wine" --version))"
"$wine" wineboot --init >/dev/null 2>&1
system32="$WINEPREFIX/drive_c/windows/system32"
[ -d "$system32" ] || fail "wineboot made no prefix at $WINEPREFIX"
x86_64-w64-mingw32-gcc -shared -O2 -s -o "$system32/bcryptprimitives.dll" \
  "$repo_root/scripts/windows/bcryptprimitives.c" "$repo_root/scripts/windows/bcryptprimitives.def" \
  -ladvapi32
mkdir -p "$work/bin" "$work/git-proxy"
x86_64-w64-mingw32-gcc -municode -O2 -s -o "$work/bin/git.exe" \
  "$repo_root/scripts/windows/git-proxy.c"
export WINEPATH="$("$wine" winepath -w "$work/bin")"
export CODESTORAGE_UNIX_GIT="$(command -v git)" CODESTORAGE_GIT_PROXY_DIR="$work/git-proxy"

cd "$repo_root"
say "cargo clippy --target $target --all-targets -- -D warnings (the Windows-only code's lints)"
cargo clippy --locked --target "$target" --all-targets -- -D warnings

say "unit tests: cargo test --lib --target $target, run by Wine"
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$wine" \
  cargo test --locked --target "$target" --lib 2>&1 | tee "$work/unit.log"
grep -qE '^test result: ok\. [0-9]+ passed; 0 failed' "$work/unit.log" ||
  fail "the unit tests did not all pass under Wine"

say "the binary: cargo build --target $target"
cargo build --locked --target "$target" --bin git-credential-codestorage
built="${CARGO_TARGET_DIR:-$repo_root/target}/$target/debug/git-credential-codestorage.exe"
install_dir="$WINEPREFIX/drive_c/Program Files/codestorage"
mkdir -p "$install_dir"
cp "$built" "$install_dir/"
exe='C:\Program Files\codestorage\git-credential-codestorage.exe'
run() { "$wine" "$exe" "$@"; }
unix_path() { "$wine" winepath -u "$1" | tr -d '\r'; }
appdata=$("$wine" cmd /c echo '%APPDATA%' | tr -d '\r')
localappdata=$("$wine" cmd /c echo '%LOCALAPPDATA%' | tr -d '\r')
[[ "$appdata" == C:* ]] || fail "no %APPDATA% in the prefix: $appdata"

say "keygen --org acme"
run keygen --org acme >"$work/public.pem" 2>"$work/keygen.err"
cat "$work/keygen.err"
key="$localappdata\\codestorage\\acme.pem"
grep -qF "wrote the private key to $key (ES256)" "$work/keygen.err" ||
  fail "keygen did not write $key, or claimed a Unix mode"
grep -qF "  'C:/Program Files/codestorage/git-credential-codestorage.exe' setup --org acme" \
  "$work/keygen.err" || fail "keygen's next step is not a command a shell runs"
key_unix=$(unix_path "$key")
# What openssl derives from the private key is the reference the tokens are checked against.
openssl pkey -in "$key_unix" -pubout -out "$work/reference.pem"
cmp -s <(openssl pkey -pubin -in "$work/public.pem") <(openssl pkey -pubin -in "$work/reference.pem") ||
  fail "keygen printed a public key that is not the private key's"

say "setup --org acme --key-file $key"
run setup --org acme --key-file "$key" | tee "$work/setup.out"
config="$appdata\\codestorage\\config.toml"
grep -qxF "wrote $config" "$work/setup.out" || fail "setup did not write %APPDATA%\\codestorage\\config.toml"
grep -qxF "[org.acme]" "$(unix_path "$config")" || fail "$config has no [org.acme]"
helper="!'C:/Program Files/codestorage/git-credential-codestorage.exe'"
for url in 'https://*.code.storage' https://acme.code.storage; do
  got=$(git config --global --get-all "credential.$url.helper" | tail -n 1)
  [ "$got" = "$helper" ] || fail "credential.$url.helper is $got, wanted $helper"
done

verify() { # TOKEN ISS REPO SCOPES: the signature (openssl, ES256) and the claims
  python3 - "$work/reference.pem" "$@" <<'EOF'
import base64, json, subprocess, sys, tempfile
key, token, iss, repo, scopes = sys.argv[1:]
def b64(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
head, body, sig = token.split(".")
assert json.loads(b64(head))["alg"] == "ES256", head
raw = b64(sig)
def der_int(b):
    b = b.lstrip(b"\0") or b"\0"
    if b[0] & 0x80: b = b"\0" + b
    return b"\x02" + bytes([len(b)]) + b
seq = der_int(raw[:32]) + der_int(raw[32:])
with tempfile.NamedTemporaryFile() as s, tempfile.NamedTemporaryFile() as m:
    s.write(b"\x30" + bytes([len(seq)]) + seq); s.flush()
    m.write(f"{head}.{body}".encode()); m.flush()
    subprocess.run(["openssl", "dgst", "-sha256", "-verify", key, "-signature", s.name, m.name],
                   check=True, stdout=subprocess.DEVNULL)
claims = json.loads(b64(body))
assert (claims["iss"], claims["repo"], claims["scopes"]) == (iss, repo, scopes.split(",")), claims
print(f"verified by openssl: {claims}")
EOF
}

say "get, asked by git: the helper line run by sh as written"
# git's sh finds 'C:/Program Files/...exe' relative to the current directory: a launcher there
# hands the request to the Windows binary under Wine, so the line runs only if its quoting holds.
launcher_dir="$work/repo/C:/Program Files/codestorage"
mkdir -p "$launcher_dir"
printf '#!/bin/sh\nexec %s %s "$@"\n' "$wine" "'$exe'" >"$launcher_dir/git-credential-codestorage.exe"
chmod +x "$launcher_dir/git-credential-codestorage.exe"
answer=$(cd "$work/repo" && printf 'protocol=https\nhost=acme.code.storage\npath=team/x.git\n\n' |
  git credential fill)
token=$(sed -n 's/^password=//p' <<<"$answer")
[ -n "$token" ] || fail "git credential fill got no token: $(grep -v '^password=' <<<"$answer")"
verify "$token" acme team/x git:read,git:write

say "token --org acme team/x --scopes git:read, with the key file world-writable on the Unix side"
# Windows has no mode bits: the key file's Unix mode, which Wine does not map, is not read
# (the Unix checks are compiled out; doctor, below, says that nothing was checked).
chmod 0666 "$key_unix"
verify "$(run token --org acme team/x --scopes git:read)" acme team/x git:read
chmod 0600 "$key_unix"

say "doctor"
run doctor | tee "$work/doctor.out"
grep -qF "ok    config $config parses: organisation acme" "$work/doctor.out" ||
  fail "doctor did not read $config"
grep -qF "acme.pem (its permissions are not checked on Windows: the helper does not read ACLs) signs" \
  "$work/doctor.out" || fail "doctor does not say that the key file's permissions go unchecked"
grep -qF "git asks this helper first for https://*.code.storage (\`$helper\` from" \
  "$work/doctor.out" || fail "doctor does not show the helper line as git holds it"

say "Windows: all passed in $(($(date +%s) - started)) s"
