#!/usr/bin/env bash
# Makes sure the programs the tests drive for real are on this machine, installing the missing
# ones from Debian's packages (the tests run as root there):
#   openssl            independent signer and verifier (sign_command tests, key fixtures)
#   ssh-agent, ssh-add real agents for agent-held keys (usually present with OpenSSH's client)
#   unshare            the broker's sandboxes: mount and PID namespaces (util-linux)
#   prlimit            the broker started under a low open-file limit (util-linux)
#   curl               the broker's control API over its Unix socket, as an orchestrator calls it
#   file               a second reader of the static binary's ELF headers
#   git-lfs            Git LFS pushed and cloned through the helper (the clients tests)
#   python3-venv, npm  the virtual environments and node packages below
# git 2.47 and 2.39, Python 3 and the Rust toolchain are expected already; maturin for the wheel
# test is fetched by scripts/test-wheel.sh into a virtual environment of its own.
#
# Then, pinned, into target/ (the tests look there):
#   target/client-deps  the git clients that never run credential helpers, for the glue of
#                       docs/clients.md: pygit2 and dulwich (PyPI), isomorphic-git (npm)
#   target/kms-venv     boto3 and moto[server] (PyPI): the contrib AWS KMS signer and the local
#                       KMS server its tests sign with (or $CODESTORAGE_TEST_VENV)
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A package=(
  [openssl]=openssl
  [ssh-agent]=openssh-client
  [ssh-add]=openssh-client
  [unshare]=util-linux
  [prlimit]=util-linux
  [curl]=curl
  [file]=file
  [git-lfs]=git-lfs
)
missing=()
for program in "${!package[@]}"; do
  command -v "$program" >/dev/null 2>&1 || missing+=("${package[$program]}")
done
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "install-test-deps: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: missing ${missing[*]}; install them (as root, with your package manager), then rerun" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

clients=target/client-deps
mkdir -p "$clients"
if ! "$clients/venv/bin/python" -c 'import pygit2, dulwich' >/dev/null 2>&1; then
  echo "install-test-deps: installing pygit2 and dulwich into $clients/venv" >&2
  python3 -m venv "$clients/venv"
  "$clients/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'pygit2==1.21.0' 'dulwich==1.2.21'
fi
if [ ! -f "$clients/node_modules/isomorphic-git/package.json" ]; then
  echo "install-test-deps: installing isomorphic-git into $clients" >&2
  npm install --silent --no-audit --no-fund --prefix "$clients" 'isomorphic-git@1.44.11'
fi

kms=${CODESTORAGE_TEST_VENV:-$PWD/target/kms-venv}
if [ ! -x "$kms/bin/moto_server" ]; then
  echo "install-test-deps: installing boto3 and moto[server] into $kms" >&2
  python3 -m venv "$kms"
  "$kms/bin/python" -m pip install --quiet --disable-pip-version-check \
    'boto3==1.44.18' 'moto[server]==5.2.6'
fi
