#!/usr/bin/env bash
# Makes sure the programs the tests drive for real are on this machine, installing the missing
# ones from Debian's packages (the tests run as root there):
#   openssl            independent signer and verifier (sign_command tests, key fixtures)
#   ssh-agent, ssh-add real agents for agent-held keys (usually present with OpenSSH's client)
#   unshare            the broker's sandboxes: mount and PID namespaces (util-linux)
#   prlimit            the broker started under a low open-file limit (util-linux)
#   curl               the broker's control API over its Unix socket, as an orchestrator calls it
#   file               a second reader of the static binary's ELF headers
# git 2.47 and 2.39, Python 3 and the Rust toolchain are expected already; maturin for the wheel
# test is fetched by scripts/test-wheel.sh into a virtual environment of its own.
set -euo pipefail

declare -A package=(
  [openssl]=openssl
  [ssh-agent]=openssh-client
  [ssh-add]=openssh-client
  [unshare]=util-linux
  [prlimit]=util-linux
  [curl]=curl
  [file]=file
)
missing=()
for program in "${!package[@]}"; do
  command -v "$program" >/dev/null 2>&1 || missing+=("${package[$program]}")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "install-test-deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: missing ${missing[*]}; install them (as root, with your package manager), then rerun" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
