#!/usr/bin/env bash
# Builds the Python wheel the way `pip install .` does, installs it into a fresh virtual
# environment, and uses the helper from there: --version, keygen, and a real `get`.
#
#   scripts/test-wheel.sh WORK_DIR
#
# Needs python3 (with venv and pip) and the package registry for maturin; nothing else is
# installed by hand. In WORK_DIR it leaves:
#   wheels/*.whl      the wheel built
#   user-venv/        the environment it was installed into
#   version.txt       `git-credential-codestorage --version`, run from that environment
#   which.txt         where `command -v` found the helper (inside user-venv/bin)
#   acme.pem          a key made by the installed binary's keygen; acme.pub.pem its public key
#   get.txt           what the installed binary's `get` printed for acme.code.storage/team/wheel
# CARGO_TARGET_DIR is honoured, so the build can share a target directory with other builds.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
fail() {
  printf 'test-wheel: %s\n' "$*" >&2
  exit 1
}

[ $# -eq 1 ] || fail "usage: scripts/test-wheel.sh WORK_DIR"
work=$1
mkdir -p "$work"
work=$(cd "$work" && pwd)
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || fail "$python is not installed; install Python 3.8 or later (or set PYTHON)"

# 1. A throwaway build environment with the build backend pyproject.toml asks for.
"$python" -m venv "$work/build-venv" \
  || fail "cannot make a virtual environment; install Python's venv module (Debian/Ubuntu: apt install python3-venv)"
build_python=$work/build-venv/bin/python
requires=$("$build_python" - "$repo_root/pyproject.toml" <<'EOF'
import sys
try:
    import tomllib
except ImportError:  # Python before 3.11
    import re
    text = open(sys.argv[1]).read()
    block = re.search(r"requires\s*=\s*\[([^\]]*)\]", text).group(1)
    print("\n".join(re.findall(r'"([^"]+)"', block)))
else:
    with open(sys.argv[1], "rb") as f:
        print("\n".join(tomllib.load(f)["build-system"]["requires"]))
EOF
)
[ -n "$requires" ] || fail "pyproject.toml names no build requirements"
echo "installing the build backend: $(echo "$requires" | tr '\n' ' ')"
# shellcheck disable=SC2086 # one requirement per line, none with spaces
"$build_python" -m pip install --quiet --disable-pip-version-check $requires \
  || fail "cannot install $requires from the package registry; check the network or the registry settings of pip"

# 2. The wheel, through the PEP 517 backend exactly as `pip install .` would call it (without
#    a second isolated environment: the backend is already installed above). The backend runs
#    the `maturin` program by name, so the environment's bin goes first on PATH, as activating
#    it (or pip's own isolated build) would do.
echo "building the wheel (a release build: minutes the first time)"
rm -rf "$work/wheels"
PATH="$work/build-venv/bin:$PATH" "$build_python" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
  --wheel-dir "$work/wheels" "$repo_root" \
  || fail "the wheel build failed; see maturin's and cargo's messages above"
shopt -s nullglob
wheels=("$work/wheels"/git_credential_codestorage-*.whl)
[ ${#wheels[@]} -eq 1 ] || fail "expected one wheel in $work/wheels, found ${#wheels[@]}"
echo "built $(basename "${wheels[0]}")"

# 3. A fresh environment that gets only the wheel: no registry, no source tree.
rm -rf "$work/user-venv"
"$python" -m venv "$work/user-venv" || fail "cannot make a second virtual environment"
"$work/user-venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index "${wheels[0]}" \
  || fail "the wheel does not install"

# 4. The helper as that environment's user finds it: on PATH after activation.
export PATH="$work/user-venv/bin:$PATH"
command -v git-credential-codestorage > "$work/which.txt"
git-credential-codestorage --version > "$work/version.txt"
rm -f "$work/acme.pem"
git-credential-codestorage keygen --org acme --out "$work/acme.pem" > "$work/acme.pub.pem"
printf 'protocol=https\nhost=acme.code.storage\npath=team/wheel.git\n\n' \
  | CODESTORAGE_PRIVATE_KEY_FILE="$work/acme.pem" CODESTORAGE_SUBJECT=wheel-test git-credential-codestorage get \
  > "$work/get.txt"
echo "the installed helper ran from $(cat "$work/which.txt")"
