#!/usr/bin/env bash
# Makes sure the programs the tests drive for real are on this machine, installing the missing
# ones from Debian's packages (the tests run as root there):
#   openssl            independent signer and verifier (sign_command tests, key fixtures)
#   ssh-agent, ssh-add real agents for agent-held keys (usually present with OpenSSH's client)
#   unshare            the broker's sandboxes: mount and PID namespaces (util-linux)
#   file               a second reader of the static binary's ELF headers
#   python3-venv       the virtual environment below
# and, from PyPI into target/kms-venv (or $CODESTORAGE_TEST_VENV), boto3 and moto[server]: the
# contrib AWS KMS signer and the local KMS server its tests sign with.
# git 2.47 and 2.39, Python 3 and the Rust toolchain are expected already; maturin for the wheel
# test is fetched by scripts/test-wheel.sh into a virtual environment of its own.
set -euo pipefail

declare -A package=(
  [openssl]=openssl
  [ssh-agent]=openssh-client
  [ssh-add]=openssh-client
  [unshare]=util-linux
  [file]=file
)
missing=()
for program in "${!package[@]}"; do
  command -v "$program" >/dev/null 2>&1 || missing+=("${package[$program]}")
done
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)

# boto3 and moto into a virtual environment of the project's own, once.
install_kms_venv() {
  local venv=${CODESTORAGE_TEST_VENV:-$(cd "$(dirname "$0")/.." && pwd)/target/kms-venv}
  [ -x "$venv/bin/moto_server" ] && return 0
  echo "install-test-deps: installing boto3 and moto[server] into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check boto3 "moto[server]"
}

if [ ${#missing[@]} -eq 0 ]; then
  install_kms_venv
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
install_kms_venv
